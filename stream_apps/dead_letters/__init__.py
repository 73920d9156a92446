"""Dead letters listed and sent again: `wastex deadletters list|replay`."""
