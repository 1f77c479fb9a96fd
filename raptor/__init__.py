"""raptor: publish every Supervisor process state change of a fleet to Redis."""

__version__ = "3.0.0"
