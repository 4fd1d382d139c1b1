"""Pure domain logic: formats, rules and aggregation. No AWS, database or HTTP imports here."""
