"""What differs between Higress releases: the base objects, mesh fields and images of each."""
