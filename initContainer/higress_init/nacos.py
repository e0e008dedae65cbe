"""Nacos: wait, log in, create the namespace, seed the base config."""


class NacosError(Exception):
    exit_code = 1
