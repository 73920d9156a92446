"""The scoring app: captured images in; classified, out-of-distribution or dead-lettered out."""
