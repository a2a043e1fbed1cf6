"""The charlm champion as an MLflow pyfunc: a prompt in, a continuation out.

Request: column `prompt` (string), one row per input; params (the request's "params"):
`temperature` (0 to 10; 0 = greedy, else sampling from softmax(logits / temperature);
default the run's evaluate.temperature), `seed` (the sampling seed, the same for every
input; default 0) and `length` (characters to write, 1 to 2000; default evaluate.n_chars).
The prompt is read as training read the book (tasks/chars.py `normalize`: lowercase, every
run of non-letters one space; characters outside the vocabulary dropped); a model of your own
text reads it as its training did (settings `reading`: whitespace runs one space, lowercased
if it was, characters outside the derived alphabet as its replacement symbol).
Response, one row per input, in order: `prompt` (the prompt as the model read it) and
`continuation` (the `length` characters written after it).
Refused with a 400 naming the input or param: a non-string or null prompt, one without a
letter, a param out of its range.
"""

import json
from pathlib import Path

import torch
from mlflow.pyfunc import PythonModel
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.serving import BadInput, column, log_pyfunc, number, refusing_bad_input, texts
from tasks.runtime import checkpoint

ENTRY = Path(__file__).with_name("serve_charlm.py")  # the models-from-code file
MAX_LENGTH = 2000


class Writer(PythonModel):
    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict) -> None:
        from models.charlm import CharEnsemble, CharLM

        self.settings = s = json.loads(Path(artifacts["settings"]).read_text())
        self.vocab = json.loads(Path(artifacts["vocab"]).read_text())
        self.index = {c: i for i, c in enumerate(self.vocab)}
        members = [CharLM(len(self.vocab), s["kind"], hidden=s["hidden"], n_layers=s["n_layers"])
                   for _ in range(s.get("members", 1))]  # fmt: skip
        self.model = members[0] if len(members) == 1 else CharEnsemble(members)
        self.model.load_state_dict(checkpoint.load(Path(artifacts["weights"])))
        self.model.eval()

    def predict(self, context, model_input, params=None):
        import pandas as pd

        d = self.settings["defaults"]
        with refusing_bad_input():
            temperature = number(params, "temperature", d["temperature"], 0, 10)
            seed = number(params, "seed", d["seed"], 0, 2**63 - 1, whole=True)
            length = number(params, "length", d["length"], 1, MAX_LENGTH, whole=True)
            prompts = texts(column(model_input, "prompt"), "prompt")
            read = [self.read(i, p) for i, p in enumerate(prompts, 1)]
        out = [self.write(p, length, temperature, seed) for p in read]
        return pd.DataFrame({"prompt": read, "continuation": out})

    def read(self, i: int, prompt: str) -> str:
        """The prompt as the model reads it."""
        from tasks.chars import normalize, prepare

        if reading := self.settings.get("reading"):  # your own text's alphabet
            unknown = reading["unknown"]
            text = "".join(c if c in self.index else unknown
                           for c in prepare(prompt, reading["lowercase"]))  # fmt: skip
            if not text.replace(unknown, "").strip():
                raise BadInput(f"input {i}: prompt {prompt[:60]!r} has no character of the "
                               "model's alphabet; send some text")  # fmt: skip
            return text
        text = "".join(c for c in normalize(prompt) if c in self.index)
        if not text.strip():
            raise BadInput(f"input {i}: prompt {prompt[:60]!r} has no letter the model reads "
                           f"({''.join(sorted(self.vocab)).strip()}); send some text")  # fmt: skip
        return text

    @torch.no_grad()
    def write(self, prompt: str, length: int, temperature: float, seed: int) -> str:
        """`length` characters after `prompt`, carrying the recurrent state (the prompt is
        read once)."""
        gen = torch.Generator().manual_seed(seed)
        logits, state = self.model.run(torch.tensor([[self.index[c] for c in prompt]]))
        out = []
        for _ in range(length):
            last = logits[0, -1]
            if temperature <= 0:
                nxt = int(last.argmax())
            else:
                nxt = int(torch.multinomial(torch.softmax(last / temperature, 0), 1, generator=gen))
            out.append(self.vocab[nxt])
            logits, state = self.model.run(torch.tensor([[nxt]]), state)
        return "".join(out)


@task(name="register", cache_policy=NO_CACHE)
def register_task(run_id: str, model, vocab: list[str], config, prompts: list[str] | None = None,
                  reading: dict | None = None) -> dict:  # fmt: skip
    """The best next-character model as this pyfunc, registered under its child run."""
    return log_writer(run_id, model, vocab, config, config.pipeline, prompts, reading)


def log_writer(run_id: str, model, vocab: list[str], config, name: str,
               prompts: list[str] | None = None, reading: dict | None = None) -> dict:  # fmt: skip
    """Log a trained CharLM (a next-character kind) or CharEnsemble as the pyfunc and register
    a new version: {version, uri}. Your own text: `prompts` (the example's) and `reading` (how
    a prompt is read: tasks/chars.py `prepare`'s lowercase, the replacement symbol)."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import AnyType

    ev = config.evaluate
    defaults = {"temperature": ev.temperature, "seed": 0, "length": ev.n_chars}
    settings = {
        "kind": model.kind,
        "hidden": model.hidden,
        "n_layers": model.n_layers,
        "members": len(getattr(model, "members", [model])),
        "defaults": defaults,
    }
    settings |= {"reading": reading} if reading else {}
    signature = ModelSignature(
        Schema([ColSpec(AnyType(), "prompt")]),  # checked by predict(), in every payload form
        Schema([ColSpec("string", "prompt"), ColSpec("string", "continuation")]),
        ParamSchema([ParamSpec("temperature", "double", ev.temperature),
                     ParamSpec("seed", "long", 0), ParamSpec("length", "long", ev.n_chars)]),
    )  # fmt: skip
    first = (prompts if prompts is not None else ev.prompts)[:1]
    example = pd.DataFrame({"prompt": first or ["en un lugar "]})
    return log_pyfunc(run_id, name, ENTRY, model, {"settings": settings, "vocab": vocab},
                      signature, (example, {"length": 20}), ["pandas"])  # fmt: skip
