"""lorafiles: LoRA training files from enriched conversations."""
