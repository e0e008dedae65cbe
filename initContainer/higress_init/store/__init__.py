"""Where the base objects live: the apiserver's file store or Nacos; seeding, delivery, the shared pilot CA."""
