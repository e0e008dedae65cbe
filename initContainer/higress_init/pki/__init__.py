"""Keys, certificates, kubeconfigs, tokens and the data key: what the run issues, and how each is validated."""
