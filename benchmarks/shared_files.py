"""Where the benchmarks find the real data: ../shared beside the repository (never committed)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEEP_COMPRESSION_NET = SHARED / "weights/deep_compression_v1.0/compressed_SqueezeNet.net"
DEEP_COMPRESSION_PROTOTXT = SHARED / "weights/deep_compression_v1.0/SqueezeNet_deploy.prototxt"
CAFFEMODEL_V11 = SHARED / "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
PROTOTXT_V11 = SHARED / "caffe/SqueezeNet_v1.1/deploy.prototxt"
IMAGENET_SAMPLES = SHARED / "data/imagenet-samples"
CIFAR10 = SHARED / "data/cifar10-jpeg.tar.gz"
