"""Step Functions task `generate-jsonl`: see TrainingFileService in shared/lorafiles/service.py."""
from lorafiles.pipeline.steps import JobStep, pipeline_step
from lorafiles.runtime import get_service


@pipeline_step(JobStep)
def handler(step: JobStep) -> dict:
    return get_service().steps.generate(step.job_id)
