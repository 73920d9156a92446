"""Producers: the camera simulator, the watch-folder and the HTTP ingest. Each image goes to MinIO
(content-addressed) and then becomes an ImageCaptured event."""
