"""Step Functions task `validate-selection`: see TrainingFileService in shared/lorafiles/service.py."""
from lorafiles.pipeline.steps import JobStep, pipeline_step
from lorafiles.runtime import get_service


@pipeline_step(JobStep)
def handler(step: JobStep) -> dict:
    return get_service().steps.validate(step.job_id)
