"""`dag-factory init`: a first job spec for a folder of notebooks (`first_spec`)."""
