"""Jobs, executors, schedules and sensors."""
