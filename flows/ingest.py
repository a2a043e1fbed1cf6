"""`seqflow ingest <pipeline> FILE...`: verify new data files, copy them into
data/incoming/<pipeline>/ atomically, then emit the Prefect event `seqflow.data.arrived` that the
pipeline's retrain deployment is triggered by (prefect.yaml)."""

import importlib
import os
import shutil
import uuid
from pathlib import Path

from tasks.data import incoming_files, sha256_file
from tasks.engine.settings import data_dir

EVENT = "seqflow.data.arrived"
# pipelines that take dropped-in files
SUFFIX = {"word2vec": ".csv", "charlm": ".txt", "seq2seq": ".tsv"}


def resource_id(pipeline: str) -> str:
    return f"seqflow.incoming.{pipeline}"


def verify(pipeline: str, files: list[Path], overrides: list[str] = ()) -> dict[str, dict]:
    """Raise a clear error when a file would fail the pipeline's retrain or add nothing to it;
    else {file name: what it adds}. Every fault of every file is named at once."""
    from tasks.filetype import problem

    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if why := problem(path):  # compressed or binary, whatever its extension
            raise ValueError(f"{why}; nothing was copied")
        if path.suffix != SUFFIX[pipeline]:
            raise ValueError(f"{path}: {pipeline} takes {SUFFIX[pipeline]} files")
    names = [p.name for p in files]
    if len(set(names)) < len(names):
        raise ValueError(f"two files named the same in {', '.join(map(str, files))}: rename one")
    earlier = [p for p in incoming_files(pipeline, SUFFIX[pipeline]) if p.name not in names]
    if pipeline == "word2vec":
        from tasks.incoming import check_word2vec

        report = check_word2vec(files, earlier=earlier)
        added = {f.name: {"rows": f.rows, "new_rows": f.new, "duplicate_rows": f.duplicates,
                          "duplicate_of": f.duplicate_of, "notes": f.notes}
                 for f in report.files if f.name in names}  # fmt: skip
    elif pipeline == "seq2seq":
        from flows.config import load_config
        from flows.seq2seq import incoming_report

        report = incoming_report(load_config("seq2seq", "parity", list(overrides)), files)
        added = {f.name: {"pairs": f.rows, "new_rows": f.new, "duplicate_rows": f.duplicates,
                          "duplicate_of": f.duplicate_of, "notes": f.notes}
                 for f in report.files if f.name in names}  # fmt: skip
    else:  # charlm: the course's alphabet, or your own text's (--set data.source=...)
        from flows.charlm import incoming_check
        from flows.config import load_config

        check_incoming = incoming_check(load_config("charlm", "parity", list(overrides)))
        added = {}
        for path in files:
            text = check_incoming(path)
            added[path.name] = {"chars": len(text)}
        known = {sha256_file(p): p.name for p in earlier}
        for path in files:
            sha = sha256_file(path)
            if sha in known:
                added[path.name] |= {"new_rows": 0, "duplicate_of": [f"incoming {known[sha]}"]}
            known.setdefault(sha, path.name)
    same = [f"{n} (every row is already in {', '.join(a['duplicate_of'])})"
            for n, a in added.items()
            if a.get("new_rows") == 0 and a.get("duplicate_of")]  # fmt: skip
    if same:
        raise ValueError(f"nothing new, nothing copied: {'; '.join(same)}")
    return added


def verify_own(pipeline: str, files: list[Path], config) -> dict[str, dict]:
    """New files for your own data (data.source): each read by `datasets` and checked by the
    column mapping; a file whose every row is already in the source or an earlier incoming file
    is refused. Returns {file name: its rows, new rows, duplicate rows}."""
    from flows.pipelines import get
    from tasks import sources
    from tasks.filetype import problem

    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if why := problem(path):
            raise ValueError(f"{why}; nothing was copied")
    if pipeline == "charlm":  # a text against the alphabet derived from the source
        from flows.charlm import incoming_check

        check_text = incoming_check(config)
        for path in files:
            check_text(path)
    mapping = get(pipeline).own_data(config)
    wanted, by_doc = mapping["wanted"], mapping.get("by_document", False)
    src = sources.locate(config.data.source, config.data.config, config.data.revision)
    found = sources.load(src, by_document=by_doc)
    known = list(found.values())
    if (earlier := sources.incoming_source(pipeline, src)) is not None:
        names = {p.name for p in files}
        kept = tuple(f for f in earlier.files if Path(f).name not in names)
        if kept:
            earlier = sources.Source(earlier.given, "files", kept, earlier.builder, earlier.options)
            known.append(sources.incoming_rows(earlier, wanted, False, by_doc))
    added = {}
    for path in files:
        rows = sources.incoming_rows(sources.locate(str(path)), wanted, False, by_doc)
        new, dup = sources.new_rows(rows, known, wanted)
        if len(new) == 0:
            raise ValueError(f"nothing new, nothing copied: every row of {path.name} is already "
                             f"in {config.data.source} or an earlier incoming file")  # fmt: skip
        added[path.name] = {"rows": len(rows), "new_rows": len(new), "duplicate_rows": dup,
                            "duplicate_of": [], "notes": []}  # fmt: skip
        known.append(new)
    return added


def ingest(pipeline: str, files: list[Path], overrides: list[str] = ()) -> list[dict]:
    """Verify every file first (nothing is copied if one is bad), then copy each one into
    the incoming folder under a temp name and rename it into place. Returns what arrived.
    `overrides` (seq2seq): the config whose train split new pairs are checked against."""
    if pipeline not in SUFFIX:
        raise ValueError(f"{pipeline} takes no new data files (only {', '.join(SUFFIX)})")
    files = [Path(f) for f in files]
    from flows.config import load_config

    config = load_config(pipeline, "parity", list(overrides))
    own = config.data.own and getattr(importlib.import_module(f"flows.{pipeline}"),
                                      "OWN_INCOMING", "source") == "source"  # fmt: skip
    if own:
        # your own data: files in a format datasets reads, checked by the column mapping
        added = verify_own(pipeline, files, config)
    else:
        added = verify(pipeline, files, overrides)
    folder = data_dir() / "incoming" / pipeline
    folder.mkdir(parents=True, exist_ok=True)
    arrived = []
    for f in files:
        target, sha = folder / f.name, sha256_file(f)
        if target.exists() and sha256_file(target) != sha:
            raise FileExistsError(f"{target} exists with other content: rename {f.name}")
        tmp = folder / f".{f.name}.{uuid.uuid4().hex[:8]}.part"
        shutil.copyfile(f, tmp)
        os.replace(tmp, target)
        arrived.append({"name": f.name, "sha256": sha, "bytes": target.stat().st_size,
                        **added.get(f.name, {})})  # fmt: skip
    return arrived


def emit_arrival(pipeline: str, arrived: list[dict]):
    """The Prefect event that triggers the pipeline's retrain deployment."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    names = ", ".join(a["name"] for a in arrived)
    event = emit_event(
        event=EVENT,
        resource={"prefect.resource.id": resource_id(pipeline), "seqflow.pipeline": pipeline},
        payload={"files": arrived, "note": f"{len(arrived)} new file(s): {names}"},
    )
    if event is not None:  # sent before the process exits (else: "Still processing items")
        EventsWorker.instance().wait_until_empty()
    return event
