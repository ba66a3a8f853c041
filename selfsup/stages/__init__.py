"""The training stages, one module each: plain functions from artifact paths and settings
to artifact files, which workflow scripts call with what Snakemake hands them and tests
call directly. Every image reaches a model through selfsup.inputs: uint8 until a
batch is formed.

This package imports nothing itself, so that a job's code fingerprint
(selfsup.fingerprints) holds only the stage it runs."""
