"""Nacos as the store: its client (over nacos-sdk-python, sdk.py), the apiserver's data layout in it, the store."""
