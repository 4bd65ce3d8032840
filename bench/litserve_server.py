"""The peer users would pick instead: LitServe, with its own batching, around
our exact in-process pipeline (``InProcessPipeline``: same checkpoint, tokenizer,
normalization, windows, dtype, batched forward and routing, all from ``AppArgs``),
so a comparison measures the serving machinery alone.

    python -m bench.litserve_server --model DIR --port 8102 [--max-batch-size 32 --batch-timeout 0.01]

The batching defaults are the service's (``BatchingArgs``).
"""

from __future__ import annotations

import argparse

import litserve as ls

from deployments.core.in_process import InProcessPipeline
from deployments.core.config import AppArgs, BatchingArgs


class HelplineLitAPI(ls.LitAPI):
    def __init__(self, args: AppArgs, **kwargs):
        super().__init__(**kwargs)
        self.args = args

    def setup(self, device):
        # LitServe placed this worker on ``device`` ("cpu", "cuda:0", ...): the pipeline runs there.
        self.classifier = InProcessPipeline.from_args(self.args, accelerator="cpu" if device == "cpu" else "cuda")

    def decode_request(self, request):
        return self.classifier.prepare([request["narrative"]])

    def batch(self, inputs):
        return inputs

    def predict(self, batch):
        probs = self.classifier.forward([windows for windows, _ in batch])
        return [self.classifier.assemble(plans, p)[0].body for (_, plans), p in zip(batch, probs)]

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return {"success": True, **output}


def app_args(model: str, accelerator: str, engine: str, dtype: str, threads: int, max_batch_size: int,
             max_batch_tokens: int) -> AppArgs:
    """The service's settings, on this model, device, engine, dtype, thread count and batch limits."""
    defaults = AppArgs()
    return AppArgs(
        model=model, accelerator=accelerator, engine=engine, dtype=dtype, torch_threads=threads,
        batching=BatchingArgs(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens),
        # The ingress's slice size means nothing here; AppArgs only asks that it fits a batch.
        windows_per_call=min(defaults.windows_per_call, max_batch_size),
    )


def main() -> None:
    batching = BatchingArgs()
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=batching.max_batch_size)
    parser.add_argument("--batch-timeout", type=float, default=0.01)
    parser.add_argument("--max-batch-tokens", type=int, default=batching.max_batch_tokens)
    args = parser.parse_args()
    settings = app_args(args.model, args.accelerator, args.engine, args.dtype, args.threads, args.max_batch_size,
                        args.max_batch_tokens)
    api = HelplineLitAPI(settings, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    # One worker on the device AppArgs names ('auto': CUDA where there is one), like one classifier replica.
    server = ls.LitServer(api, accelerator=settings.accelerator, workers_per_device=1, devices=1, timeout=120)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()

