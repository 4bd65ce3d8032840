"""The model card's own serving recipe, as a baseline: FastAPI + uvicorn, one
request at a time, fp32, every input padded to 256 tokens, no batching.

    python bench/seed_recipe_server.py --model DIR --port 8101

It loads the same checkpoint with the project's loader (same weights, same
network) but runs it exactly the way the model card's example does.
"""

from __future__ import annotations

import argparse
import re

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from deployments.core.labels import TASKS
from deployments.core.loading import load_labels, load_model, load_tokenizer, resolve_checkpoint


class CaseRequest(BaseModel):
    narrative: str


def build(model_dir: str, max_length: int = 256) -> FastAPI:
    path = resolve_checkpoint(model_dir)
    labels = load_labels(path)
    tokenizer = load_tokenizer(path)
    model = load_model(path, labels).float().eval()
    app = FastAPI()

    def preprocess_text(text: str) -> str:
        return re.sub(r"[^a-z0-9\s]", "", text.lower().strip())

    def classify_multitask_case(narrative: str) -> dict:
        inputs = tokenizer(preprocess_text(narrative), truncation=True, padding="max_length",
                           max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(inputs["input_ids"], inputs["attention_mask"])
        out = {}
        for task, lg in zip(TASKS, logits):
            probs = torch.softmax(lg, dim=1)[0]
            i = int(torch.argmax(probs))
            out[task] = {"label": labels.for_task(task)[i], "confidence": float(probs[i])}
        return out

    @app.post("/classify")
    def classify(req: CaseRequest) -> dict:  # sync: FastAPI runs it in a thread, one model call at a time
        return {"success": True, "classification": classify_multitask_case(req.narrative)}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    uvicorn.run(build(args.model), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
