"""Step Functions task `append-batch`: see TrainingFileService in shared/lorafiles/service.py."""
from lorafiles.pipeline.steps import BatchStep, pipeline_step
from lorafiles.runtime import get_service


@pipeline_step(BatchStep)
def handler(step: BatchStep) -> dict:
    return get_service().steps.append_batch(step.job_id, step.batch_index)
