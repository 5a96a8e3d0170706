"""Any Hugging Face sequence classifier (AutoModelForSequenceClassification), batched properly.

Production deployments point an analysis at a fine-tuned model (an SST-2 DistilBERT for
sentiment, a toxicity or prompt-injection model) by id or local path; see README.
"""

from __future__ import annotations

from models.base import InputError, TextPrediction
from models.batching import plan_batches
from models.runtime import load_transformer


class HFClassifier:
    def __init__(
        self,
        source: str,
        *,
        device: str = "auto",
        max_length: int = 512,
        max_batch_size: int = 32,
        token_budget: int | None = None,
        local_files_only: bool = True,
        name: str = "",
    ) -> None:
        import torch

        self.tokenizer, self.model, self.device = load_transformer(
            source, "AutoModelForSequenceClassification", device=device, local_files_only=local_files_only
        )
        self.model_name = name or source
        self.max_length = min(max_length, self.tokenizer.model_max_length or max_length)
        self.max_batch_size = max_batch_size
        self.token_budget = token_budget
        config = self.model.config
        self.labels = [str(config.id2label[i]).lower() for i in range(config.num_labels)]
        # Multi-label models (toxic-bert) score each label independently.
        self.multi_label = config.problem_type == "multi_label_classification"
        self._torch = torch

    def predict(self, texts: list[str]) -> list[TextPrediction | InputError]:
        torch = self._torch
        results: list[TextPrediction | InputError] = [InputError("empty_text", "text is empty")] * len(texts)
        valid = [i for i, text in enumerate(texts) if isinstance(text, str) and text.strip()]
        if not valid:
            return results
        lengths = [len(ids) for ids in self.tokenizer([texts[i] for i in valid], truncation=False)["input_ids"]]
        clipped = [min(n, self.max_length) for n in lengths]
        with torch.inference_mode():
            for batch in plan_batches(clipped, self.max_batch_size, self.token_budget):
                inputs = self.tokenizer(
                    [texts[valid[j]] for j in batch],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**inputs).logits.float()
                probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
                for row, j in enumerate(batch):
                    scores = {label: round(float(p), 6) for label, p in zip(self.labels, probs[row], strict=True)}
                    best = max(scores, key=scores.__getitem__)
                    results[valid[j]] = TextPrediction(
                        best, scores[best], scores, self.model_name, truncated=lengths[j] > self.max_length
                    )
        return results
