"""Step Functions task `compensate-job`: see TrainingFileService in shared/lorafiles/service.py."""
from lorafiles.pipeline.steps import CompensateStep, pipeline_step
from lorafiles.runtime import get_service


@pipeline_step(CompensateStep)
def handler(step: CompensateStep) -> dict:
    return get_service().steps.compensate(step.job_id, step.error)
