"""Tools around the engine: the simulator, the producer, repartition and the demo."""
