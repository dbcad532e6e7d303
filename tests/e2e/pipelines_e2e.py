"""The pipelines ``atdata serve --pipelines`` loads in the end-to-end tests and the benchmark.

Written as the docs write them: the pipeline calls ``ds.map(transform_sample)``
with no output prefix, and the map lands under the pipeline's output.
Buckets come from the environment (set by the test or benchmark that starts the server).
"""

from __future__ import annotations

import os
from typing import Any

import atdata
from atdata.processing import processor

BUCKET = os.environ["ATDATA_E2E_BUCKET"]
R2_BUCKET = os.environ.get("ATDATA_E2E_R2_BUCKET")
EXECUTOR = os.environ.get("ATDATA_E2E_EXECUTOR")  # None: map's default ("local")


@atdata.packable
class RawSample:
    text: str
    value: int


@atdata.packable
class CleanSample:
    text: str
    doubled: int


@processor
def transform_sample(sample: RawSample) -> CleanSample:
    return CleanSample(text=sample.text.upper(), doubled=sample.value * 2)


def _map(ds: Any) -> Any:
    if EXECUTOR:
        return ds.map(transform_sample, executor=EXECUTOR)
    return ds.map(transform_sample)


@atdata.pipeline(trigger=f"s3://{BUCKET}/incoming", output=f"s3://{BUCKET}/processed")
def process_uploads(shard_url: str) -> Any:
    ds = atdata.Dataset[RawSample](shard_url)
    return _map(ds)


if R2_BUCKET:

    @atdata.pipeline(trigger=f"r2://{R2_BUCKET}/incoming", output=f"r2://{R2_BUCKET}/processed")
    def process_r2_uploads(shard_url: str) -> Any:
        ds = atdata.Dataset[RawSample](shard_url)
        return _map(ds)
