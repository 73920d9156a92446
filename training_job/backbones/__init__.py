"""Image backbones selectable by name; EfficientNet-Lite0 carries ImageNet weights ported offline."""
