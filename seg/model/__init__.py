"""The model: the network, the LightningModule that trains it with a head, its metrics and schedules."""
