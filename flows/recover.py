"""When a run fails after training, the model is not lost: its checkpoint stays on disk, the
error says where, and `seqflow log-model <pipeline> --checkpoint PATH` logs it later."""

from contextlib import contextmanager
from pathlib import Path

from tasks.engine import tracking
from tasks.engine.stage import run_logger
from tasks.runtime import checkpoint
from tasks.runtime.faults import NonFiniteLoss


class ModelNotLogged(RuntimeError):
    """A run failed after (or during) training; the message says where its checkpoint is."""


# settings that do not change what is trained: a checkpoint of either value resumes
NOT_IN_KEY = {"resume", "launcher", "checkpoint_every"}


def checkpoint_folder(pipeline: str, fingerprints: list[str], train_cfg, *extra) -> Path:
    """Checkpoints belong to the training data, every training setting and `extra` (e.g. a
    model kind). With train.resume=false the folder is emptied: training starts over."""
    where = checkpoint.folder(pipeline, fingerprints, train_cfg.model_dump(exclude=NOT_IN_KEY),
                              *extra)  # fmt: skip
    if not getattr(train_cfg, "resume", True):
        checkpoint.discard(where)
    return where


@contextmanager
def keep_model(pipeline: str, where: Path, epochs: int):
    """Around train -> evaluate -> register. Yields whether this run owns the checkpoint folder:
    a file lock until the model is logged (a run of the same setup started meanwhile trains
    without checkpoints); then the checkpoints go. An error (MLflow gone, a crash) comes back
    naming the checkpoint that survives it and what to do with it."""
    lock = checkpoint.claim(where)
    if lock is None:
        run_logger().warning("another run is training this setup in %s: no checkpoints", where)
    try:
        yield lock is not None
    except NonFiniteLoss:  # names its own last good checkpoint; resuming would fail again
        raise
    except Exception as err:
        found = checkpoint.latest(where)
        if found is None:
            raise
        path, state = found
        done = state["epoch"] + 1
        if done >= epochs:
            note = (
                f"the trained model is kept in {path}; once MLflow ({tracking.tracking_uri()}) "
                f"is reachable, log it with: seqflow log-model {pipeline} --checkpoint {path}"
            )
        else:
            note = (
                f"training stopped after epoch {done} of {epochs}; its checkpoint {path} is "
                "kept: run the same command again to resume from it"
            )
        raise ModelNotLogged(f"{type(err).__name__}: {err}\n  {note}") from err
    else:
        if lock is not None:  # the model is in MLflow: its checkpoints are not needed
            checkpoint.discard(where)
    finally:
        if lock is not None:
            lock.release()


@contextmanager
def keep_models(folders: dict[str, Path], epochs: int | dict[str, int]):
    """Around train -> register, for every kind: yields {kind: its folder, or None when another
    run holds it}. A run killed while training kind k re-uses the finished kinds' final
    checkpoints and resumes kind k; once the model is registered the checkpoints go. An error
    comes back naming the checkpoints that survive it. `epochs`: the planned epochs (one
    number, or one per kind)."""
    locks = {k: checkpoint.claim(w) for k, w in folders.items()}
    for k, lock in locks.items():
        if lock is None:
            run_logger().warning("another run is training %s in %s: no checkpoints", k, folders[k])
    try:
        yield {k: folders[k] if locks[k] is not None else None for k in folders}
    except NonFiniteLoss:  # names its own last good checkpoint; resuming would fail again
        raise
    except Exception as err:
        kept = []
        for k, where in folders.items():
            if locks[k] is None:
                continue
            planned = epochs[k] if isinstance(epochs, dict) else epochs
            # an ensemble's members checkpoint in member-<n> subfolders
            for name, folder in [(k, where)] + [
                (f"{k} {m.name}", m) for m in sorted(where.glob("member-*"))
            ]:
                found = checkpoint.latest(folder)
                if found is not None:
                    kept.append(f"{name}: {found[0]} (epoch {found[1]['epoch'] + 1} of {planned})")
        if not kept:
            raise
        raise ModelNotLogged(f"{type(err).__name__}: {err}\n  checkpoints kept: "
                             + "; ".join(kept) + ". Run the same command again: finished "
                             "kinds are re-used, the others resume") from err  # fmt: skip
    else:
        for k, where in folders.items():
            if locks[k] is not None:  # the model is in MLflow: its checkpoints are not needed
                checkpoint.discard(where)
    finally:
        for lock in locks.values():
            if lock is not None:
                lock.release()


def rebuild(state: dict):
    """The nn.Module a checkpoint holds (word2vec only, for now): its meta names the model
    kind, vocabulary and width (tasks/train/word2vec.py::train_task)."""
    from models.word2vec import SkipGramNS, Word2Vec

    meta = state["meta"]
    cls = Word2Vec if meta["model"] == "softmax" else SkipGramNS
    model = cls(len(meta["vocab"]), meta["embed_size"])
    model.load_state_dict(state["model"])
    return model


def log_checkpoint(pipeline: str, path: Path) -> dict:
    """Log a checkpoint's model to the current MLflow store as a new run of `pipeline` (tagged
    with the run it came from) and register it. Returns run id, version and epochs."""
    if pipeline != "word2vec":
        raise ValueError(f"log-model knows word2vec checkpoints only, not {pipeline}")
    try:
        state = checkpoint.load(path)
        meta = state["meta"]
    except Exception as err:  # missing, truncated, or not a checkpoint
        raise ValueError(f"{path} is not a readable seqflow checkpoint: {err}") from err
    if meta.get("pipeline") != pipeline:
        raise ValueError(f"{path} is a {meta.get('pipeline')} checkpoint, not {pipeline}")
    model = rebuild(state)
    epochs = state["epoch"] + 1
    tags = {"recovered_from_run": meta["run_id"], "checkpoint": str(path),
            "recovered_epochs": epochs}  # fmt: skip
    params = meta.get("params", {})
    with tracking.pipeline_run(pipeline, meta.get("profile", "unknown"), params, tags) as run_id:
        losses = [row["train_loss"] for row in state["history"]]  # the runtime's, per epoch
        tracking.log_steps(run_id, [(i, {"train_loss": v}) for i, v in enumerate(losses)])
        tracking.log_metrics(run_id, {"final_train_loss": losses[-1]})
        tracking.log_json(run_id, meta["vocab"], "vocab.json")
        logged = tracking.register_task.fn(run_id, model, pipeline, example_ids=[0, 1, 2])
    return {"run_id": run_id, "version": logged["version"], "epochs": epochs,
            "planned_epochs": meta.get("epochs", epochs)}  # fmt: skip
