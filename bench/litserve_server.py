"""The peer users would pick instead: LitServe, with its own batching, around
our exact model code (same checkpoint, tokenizer, normalization, dtype and
batched forward), so a comparison measures the serving machinery alone.

    python bench/litserve_server.py --model DIR --port 8102 [--max-batch-size 32 --batch-timeout 0.01]
"""

from __future__ import annotations

import argparse

import litserve as ls

from deployments.core.config import AppArgs, RoutingArgs
from deployments.core.inference import BatchClassifier
from deployments.core.loading import load_tokenizer, resolve_checkpoint
from deployments.core.postprocess import CaseAssembler
from deployments.core.preprocess import NarrativeTokenizer, prepare_cases
from deployments.core.routing import RoutingPolicy


class HelplineLitAPI(ls.LitAPI):
    def __init__(self, model: str, dtype: str, threads: int, max_rows: int, max_tokens: int, **kwargs):
        super().__init__(**kwargs)
        self.model_dir, self.dtype, self.threads = model, dtype, threads
        self.max_rows, self.max_tokens = max_rows, max_tokens
        self.args = AppArgs()

    def setup(self, device):
        self.backend = BatchClassifier.load(self.model_dir, accelerator="cpu" if device == "cpu" else "cuda",
                                            dtype=self.dtype, torch_threads=self.threads)
        self.tokenizer = NarrativeTokenizer(load_tokenizer(resolve_checkpoint(self.model_dir)))
        labels = self.backend.labels
        self.assembler = CaseAssembler(labels, RoutingPolicy(RoutingArgs(), labels), "weighted_mean", "max")

    def decode_request(self, request):
        return prepare_cases([request["narrative"]], self.tokenizer, max_length=self.args.max_length,
                             overlap=self.args.window_overlap)

    def batch(self, inputs):
        return inputs

    def predict(self, batch):
        probs = self.backend.classify([w for w, _ in batch], max_rows=self.max_rows, max_tokens=self.max_tokens)
        return [self.assembler.assemble(plans, p)[0][0] for (_, plans), p in zip(batch, probs)]

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return {"success": True, **output}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.01)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    args = parser.parse_args()
    api = HelplineLitAPI(args.model, args.dtype, args.threads, args.max_batch_size, args.max_batch_tokens,
                         max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
