"""The use cases of lorafiles, one module each: starting jobs (`jobs`), the pipeline steps
(`steps`), reading (`reading`) and local import (`importing`); `common` holds what they share."""
