"""HTTP routes of the review UI: pages, JSON API, sign-in, images."""
