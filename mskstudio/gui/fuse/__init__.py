"""Clinical data in the models: the Train dialog section, the Fuse dialog."""
