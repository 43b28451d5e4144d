"""What iotmon keeps on disk: the typed checkpoint documents, the state directory, checkpoint
encoding, file dead letters."""
