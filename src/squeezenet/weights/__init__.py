"""Readers and writers of every weights format SqueezeNet exists in."""
