"""What iotmon keeps on disk: the state directory, checkpoint encoding, file dead letters."""
