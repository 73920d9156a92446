"""The version builder: labels from the label log become delta dataset versions with immutable manifests."""
