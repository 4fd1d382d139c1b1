"""Running the state machine: in AWS (Step Functions) or locally (moto's ASL interpreter)."""
