"""Readers and writers of every weights format SqueezeNet exists in.

``io`` is the loader and its table of formats; each format is one module with
the same ``read(path, arch)``: ``safetensors`` (ours, also ``save``),
``torch_file`` (.pth/.pt, renamed by ``torchvision``), ``caffe``,
``deep_compression`` (the paper's .net) and ``sqz`` (the Deep-Compressed
container, with ``huffman`` and ``bitpack`` below it). ``names`` is the one
table of layer names, ``fit`` the shape check all readers share, ``files``
the atomic writes, ``registry`` the public pretrained files. Nothing here
imports ``squeezenet.compress``, which writes .sqz files on top of these readers.
"""
