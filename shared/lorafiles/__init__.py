"""lorafiles: LoRA training files from enriched conversations."""

__version__ = "0.2.0"
