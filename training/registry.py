"""The adapter registry: immutable versions, their lineage and gate reports, and the live/canary aliases.

A version is a directory `adapters/<id>/` (written by a training job to a temp name, then renamed into
place) holding `adapter_model.safetensors`, `adapter_config.json` and `manifest.json`:

    {"id": "v0003", "parent": "v0002", "base_model_id": ..., "base_hash": ..., "dataset_hash": ...,
     "configs": {...}, "metrics": {...}, "created_at": ...,
     "files": {"adapter_model.safetensors": sha256, ...}}

`validate(path)` checks a directory *before anything loads it* and raises AdapterRejectedError saying what is
wrong: pickle-capable files present, manifest missing or for another base model, a file whose sha256 does
not match (truncated or tampered), target modules or tensor shapes that don't fit the base, NaN/inf values.

    registry = Registry.for_model(store, settings.adapters_dir, model_dir)
    registry.register(settings.adapters_dir / "v0003")      # validate + insert a row (idempotent by id)
    registry.set_gate_report("v0003", report, passed=True)
    registry.set_alias("live", "v0003", 1.0, by="admin")     # recorded in alias_history

The engine is not touched here: assistant/routing.py loads and swaps versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any

from assistant.errors import AdapterRejectedError, AssistantError
from feedback.store import utc_now

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
STATUSES = ("candidate", "canary", "live", "retired", "rejected")
ALIASES = ("live", "canary")
# Formats that can run code when loaded (pickle) or that PEFT would load instead of safetensors.
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5")
# Unlisted files that are harmless to have beside the adapter (PEFT writes a README.md model card).
DOC_SUFFIXES = (".md", ".txt")
VERSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVED_IDS = ("base", "live", "canary")  # names the API and the engine already use
_AUTO_ID_RE = re.compile(r"^v(\d{4,})$")
_PEFT_PREFIX = "base_model.model."
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class VersionNotFoundError(AssistantError):
    status = 404
    code = "version_not_found"


# ---------------------------------------------------------------------------- the base model's shape
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes) without reading any tensor."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path.name} is too short to be a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER_BYTES:
            raise ValueError(f"{path.name} has an implausible header size ({size} bytes)")
        header = json.loads(fh.read(size))
    header.pop("__metadata__", None)
    return dict(header)


def base_module_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Weight shapes of the base model's modules, by module name (`model.layers.0.self_attn.q_proj`).

    Read from the safetensors headers only; a tied `lm_head` (absent from the file) gets the embedding's
    shape so an adapter on it is still checked.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for weights in sorted(Path(model_dir).glob("*.safetensors")):
        for name, info in safetensors_header(weights).items():
            if name.endswith(".weight"):
                shapes[name[: -len(".weight")]] = tuple(int(d) for d in info["shape"])
    config_path = Path(model_dir) / "config.json"
    tied = True
    if config_path.is_file():
        tied = bool(json.loads(config_path.read_text()).get("tie_word_embeddings", True))
    if tied and "lm_head" not in shapes and "model.embed_tokens" in shapes:
        vocab, hidden = shapes["model.embed_tokens"]
        shapes["lm_head"] = (vocab, hidden)
    return shapes


# ---------------------------------------------------------------------------- registry
class Registry:
    """Adapter versions in the database (tables `versions`, `aliases`, `alias_history`, migration 003)."""

    def __init__(
        self,
        store: Any,
        adapters_dir: Path,
        base_info: dict[str, Any],
        base_modules: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        """`base_info`: {"model_id", "base_hash"} of the serving base (assistant.model.base_model_info);
        `base_modules`: its module → weight shape map (base_module_shapes); read from
        `base_info["model_dir"]` when not given."""
        self.store = store
        self.adapters_dir = Path(adapters_dir)
        self.base_info = dict(base_info)
        if base_modules is None and base_info.get("model_dir"):
            base_modules = base_module_shapes(Path(base_info["model_dir"]))
        if not base_modules:
            raise ValueError("the registry needs the base model's module shapes (base_modules or model_dir)")
        self.base_modules = dict(base_modules)
        self._leaf_names = {name.rsplit(".", 1)[-1] for name in self.base_modules}
        self._bad_dirs: dict[str, float] = {}  # dir → mtime of a directory that failed validation

    @classmethod
    def for_model(cls, store: Any, adapters_dir: Path, model_dir: Path) -> Registry:
        from assistant.model import base_model_info

        return cls(store, adapters_dir, base_model_info(Path(model_dir)), base_module_shapes(Path(model_dir)))

    # -------------------------------------------------------------- validation
    def validate(self, path: Path | str) -> dict[str, Any]:
        """Check an adapter directory before anything loads it; return its manifest.

        Raises AdapterRejectedError with the first problem found.
        """
        path = Path(path)
        where = f"adapter {path.name!r}"
        if not path.is_dir():
            raise AdapterRejectedError(f"{where}: {path} is not a directory")
        present: dict[str, Path] = {}
        for item in sorted(path.rglob("*")):
            rel = item.relative_to(path).as_posix()
            if item.is_symlink():
                raise AdapterRejectedError(f"{where}: {rel} is a symlink; versions must hold plain files")
            if item.is_dir():
                continue
            if item.suffix.lower() in UNSAFE_SUFFIXES:
                raise AdapterRejectedError(
                    f"{where}: {rel} is a pickle-capable file ({item.suffix}), which can run code when "
                    "loaded; only safetensors weights are accepted — save with safe_serialization=True "
                    "and remove it"
                )
            present[rel] = item
        manifest = self._read_manifest(path, where)
        if manifest.get("base_model_id") != self.base_info.get("model_id") or manifest.get(
            "base_hash"
        ) != self.base_info.get("base_hash"):
            raise AdapterRejectedError(
                f"{where} was trained on base {manifest.get('base_model_id')!r} "
                f"(hash {str(manifest.get('base_hash'))[:12]}…), but this server serves "
                f"{self.base_info.get('model_id')!r} (hash {str(self.base_info.get('base_hash'))[:12]}…); "
                "retrain it on the serving base model"
            )
        files = manifest["files"]
        for required in (WEIGHTS, ADAPTER_CONFIG):
            if required not in files:
                raise AdapterRejectedError(f"{where}: manifest.json does not list {required}")
        for name, expected in files.items():
            listed = present.get(name)
            if listed is None:
                raise AdapterRejectedError(f"{where}: {name} is listed in manifest.json but missing")
            if sha256_file(listed) != expected:
                raise AdapterRejectedError(
                    f"{where}: {name} does not match its sha256 in manifest.json "
                    f"(size {listed.stat().st_size} bytes) — the file is truncated or was modified; "
                    "re-copy or retrain the version"
                )
        for rel in present:
            if rel != MANIFEST and rel not in files and not rel.lower().endswith(DOC_SUFFIXES):
                raise AdapterRejectedError(
                    f"{where}: {rel} is not listed in manifest.json; a version holds only the files its "
                    "manifest names (with their sha256)"
                )
        self._check_config(path / ADAPTER_CONFIG, where)
        self._check_tensors(path / WEIGHTS, where)
        return manifest

    def _read_manifest(self, path: Path, where: str) -> dict[str, Any]:
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise AdapterRejectedError(
                f"{where}: no manifest.json; a version needs one with id, base_model_id, base_hash and the "
                "sha256 of every file"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdapterRejectedError(f"{where}: manifest.json is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict):
            raise AdapterRejectedError(f"{where}: manifest.json must be a JSON object")
        missing = [k for k in ("id", "base_model_id", "base_hash", "files") if not manifest.get(k)]
        if missing:
            raise AdapterRejectedError(f"{where}: manifest.json lacks {', '.join(missing)}")
        if (
            not isinstance(manifest["id"], str)
            or not VERSION_ID_RE.match(manifest["id"])
            or manifest["id"] in RESERVED_IDS
        ):
            raise AdapterRejectedError(
                f"{where}: manifest id {manifest['id']!r} must be letters, digits, '.', '_' or '-' (≤ 64) "
                f"and not one of {RESERVED_IDS}"
            )
        files = manifest["files"]
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise AdapterRejectedError(f"{where}: manifest.json 'files' must map file names to sha256 hex")
        for name in files:
            if name.startswith("/") or ".." in Path(name).parts:
                raise AdapterRejectedError(f"{where}: manifest.json names a file outside the version: {name}")
        return manifest

    def _check_config(self, config_path: Path, where: str) -> dict[str, Any]:
        try:
            config = json.loads(config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdapterRejectedError(f"{where}: adapter_config.json is not valid JSON ({exc})") from None
        if not isinstance(config, dict) or config.get("peft_type") != "LORA":
            raise AdapterRejectedError(f"{where}: adapter_config.json must describe a LoRA (peft_type LORA)")
        targets = config.get("target_modules")
        if isinstance(targets, str):
            if targets != "all-linear" and not any(re.fullmatch(targets, n) for n in self.base_modules):
                raise AdapterRejectedError(
                    f"{where}: target_modules pattern {targets!r} matches no module of the base model"
                )
        elif isinstance(targets, list) and targets:
            unknown = sorted(
                str(t) for t in targets if t not in self._leaf_names and t not in self.base_modules
            )
            if unknown:
                known = ", ".join(sorted(n for n in self._leaf_names if n.endswith("proj") or n == "lm_head"))
                raise AdapterRejectedError(
                    f"{where}: target modules {unknown} do not exist in the base model (it has: {known})"
                )
        else:
            raise AdapterRejectedError(f"{where}: adapter_config.json has no target_modules")
        for key in ("modules_to_save",):
            extra = config.get(key) or []
            unknown = sorted(
                str(m) for m in extra if m not in self._leaf_names and m not in self.base_modules
            )
            if unknown:
                raise AdapterRejectedError(f"{where}: {key} {unknown} do not exist in the base model")
        return config

    def _check_tensors(self, weights: Path, where: str) -> None:
        """Shapes from the header against the base model first, then every value finite."""
        from safetensors import SafetensorError, safe_open

        try:
            header = safetensors_header(weights)
        except (OSError, ValueError) as exc:
            raise AdapterRejectedError(f"{where}: {WEIGHTS} cannot be read as safetensors ({exc})") from None
        lora_tensors = 0
        for name, info in header.items():
            module, kind = _split_tensor_name(name)
            base_shape = self.base_modules.get(module)
            if base_shape is None:
                raise AdapterRejectedError(
                    f"{where}: tensor {name} targets module {module!r}, which the base model lacks"
                )
            shape = tuple(int(d) for d in info.get("shape", ()))
            problem = _shape_problem(kind, shape, base_shape)
            if problem:
                raise AdapterRejectedError(
                    f"{where}: tensor {name} has shape {list(shape)} but {problem} "
                    f"(base weight {list(base_shape)}); it was trained for a different model"
                )
            lora_tensors += kind.startswith("lora")
        if lora_tensors == 0:
            raise AdapterRejectedError(f"{where}: {WEIGHTS} holds no LoRA weights")
        _check_rank_pairs(header, where)
        try:
            with safe_open(str(weights), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                    tensor = f.get_tensor(name)
                    if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                        raise AdapterRejectedError(
                            f"{where}: tensor {name} holds NaN or infinite values; training diverged — "
                            "lower the learning rate and retrain"
                        )
        except (SafetensorError, OSError, ValueError) as exc:
            raise AdapterRejectedError(f"{where}: {WEIGHTS} cannot be read as safetensors ({exc})") from None

    # -------------------------------------------------------------- versions
    def register(self, path: Path | str) -> dict[str, Any]:
        """Validate and record a version; returns its row. Idempotent by id.

        A directory outside `adapters_dir` is copied in as `adapters_dir/<id>` (temp name, then rename);
        an existing directory is never overwritten, and an id already registered with a different
        manifest is refused (a reused name would serve stale weights).
        """
        path = Path(path)
        manifest = self.validate(path)
        version = manifest["id"]
        manifest_text = json.dumps(manifest, sort_keys=True)
        existing = self.get(version)
        if existing is not None:
            if json.dumps(existing["manifest"], sort_keys=True) != manifest_text:
                raise AdapterRejectedError(
                    f"version id {version!r} is already registered with different contents; versions are "
                    "immutable — give the new adapter a new id (Registry.next_version_id())"
                )
            return existing
        target = self.adapters_dir / version
        if path.resolve() != target.resolve():
            if target.exists():
                if _read_json(target / MANIFEST) != manifest:
                    raise AdapterRejectedError(
                        f"{target} already exists with other contents; versions are never overwritten — "
                        "give the adapter a new id"
                    )
            else:
                self.adapters_dir.mkdir(parents=True, exist_ok=True)
                tmp = self.adapters_dir / f".tmp-register-{version}-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(path, tmp, symlinks=False)
                os.rename(tmp, target)  # atomic; fails rather than replace if target appeared meanwhile
            self.validate(target)  # the copy is what will be loaded
        row = {
            "id": version,
            "parent": manifest.get("parent"),
            "path": str(target.resolve()),
            "base_model_id": manifest["base_model_id"],
            "base_hash": manifest["base_hash"],
            "dataset_hash": manifest.get("dataset_hash"),
            "manifest_json": manifest_text,
            "status": "candidate",
            "created_at": manifest.get("created_at") or utc_now(),
        }

        def insert(db: Any) -> None:
            if db.execute("SELECT 1 FROM versions WHERE id = ?", [version]).fetchone():
                return  # registered concurrently with the same manifest (checked above)
            columns = ", ".join(row)
            db.execute(
                f"INSERT INTO versions ({columns}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
            )

        self.store.write(insert)
        log.info("registered adapter version %s (parent %s)", version, row["parent"])
        found = self.get(version)
        assert found is not None
        return found

    def sync(self) -> list[str]:
        """Register version directories that appeared under `adapters_dir`; return the new ids.

        A directory that fails validation is logged once (until it changes) and skipped.
        """
        if not self.adapters_dir.is_dir():
            return []
        known = {row["id"] for row in self.store.query("SELECT id FROM versions")}
        added = []
        for item in sorted(self.adapters_dir.iterdir()):
            if item.name.startswith(".") or not item.is_dir() or item.name in known:
                continue
            mtime = item.stat().st_mtime
            if self._bad_dirs.get(str(item)) == mtime:
                continue
            try:
                found = _read_json(item / MANIFEST)
                named = found.get("id") if isinstance(found, dict) else None
                if named is not None and named != item.name:
                    raise AdapterRejectedError(
                        f"{item} holds version {named!r}; a version directory is named after its id"
                    )
                added.append(self.register(item)["id"])
            except AdapterRejectedError as exc:
                self._bad_dirs[str(item)] = mtime
                log.warning("not registering %s: %s", item, exc)
        return added

    def validate_registered(self, version: str) -> dict[str, Any]:
        """Validate a registered version's directory as it is now and check it is still the registered
        one (same manifest): run before every load. Returns the row."""
        row = self.require(version)
        path = Path(row["path"])
        if not path.is_dir() and (self.adapters_dir / version).is_dir():
            path = self.adapters_dir / version  # the data directory was moved since registration
        row["path"] = str(path)
        manifest = self.validate(path)
        if manifest != row["manifest"]:
            raise AdapterRejectedError(
                f"adapter {version!r}: {path} no longer holds the registered version (its manifest "
                "changed); versions are immutable — register the new adapter under a new id"
            )
        return row

    def lineage(self, version: str | None) -> list[str]:
        """`version`, its parent, ... back to the base: ["v0003", "v0002", "base"]."""
        chain: list[str] = []
        while version is not None and version not in chain:
            chain.append(version)
            row = self.get(version)
            version = row["parent"] if row else None
        return [*chain, "base"]

    def list_versions(self) -> list[dict[str, Any]]:
        """Every version, oldest first, with manifest/gate decoded and `aliases` (live/canary)."""
        rows = self.store.query("SELECT * FROM versions ORDER BY created_at, id")
        return [self._decode(row) for row in rows]

    def get(self, version: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM versions WHERE id = ?", [version])
        return self._decode(rows[0]) if rows else None

    def require(self, version: str) -> dict[str, Any]:
        row = self.get(version)
        if row is None:
            raise VersionNotFoundError(
                f"version {version!r} is not registered; GET /admin/versions or "
                "`python -m assistant versions` lists them"
            )
        return row

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        row["manifest"] = json.loads(row.pop("manifest_json") or "{}")
        gate = row.pop("gate_json")
        row["gate"] = json.loads(gate) if gate else None
        row["gate_passed"] = None if row["gate_passed"] is None else bool(row["gate_passed"])
        row["metrics"] = row["manifest"].get("metrics") or {}
        return row

    def set_gate_report(self, version: str, report: dict[str, Any], passed: bool) -> None:
        """Store the gate's report; a failed gate marks a candidate `rejected` (force can still promote)."""
        self.require(version)
        report_json = json.dumps(report, sort_keys=True, default=str)

        def fn(db: Any) -> None:
            db.execute(
                """UPDATE versions SET gate_json = ?, gate_passed = ?,
                   status = CASE WHEN status IN ('candidate', 'rejected')
                                 THEN (CASE WHEN ? THEN 'candidate' ELSE 'rejected' END) ELSE status END
                   WHERE id = ?""",
                [report_json, int(bool(passed)), int(bool(passed)), version],
            )

        self.store.write(fn)

    def set_status(self, version: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.store.write(
            lambda db: db.execute("UPDATE versions SET status = ? WHERE id = ?", [status, version])
        )

    def next_version_id(self) -> str:
        """The next free `vNNNN` id (one past the highest in the database or on disk, temp dirs included)."""
        highest = 0
        names = [row["id"] for row in self.store.query("SELECT id FROM versions")]
        if self.adapters_dir.is_dir():
            names += [p.name for p in self.adapters_dir.iterdir()]
        for name in names:
            match = _AUTO_ID_RE.match(name)
            if match:
                highest = max(highest, int(match.group(1)))
        return f"v{highest + 1:04d}"

    # -------------------------------------------------------------- aliases
    def live(self) -> str | None:
        """The live version recorded in the database; None means the base model."""
        rows = self.store.query("SELECT version FROM aliases WHERE name = 'live'")
        return rows[0]["version"] if rows else None

    def canary(self) -> tuple[str | None, float]:
        """(canary version, share of new conversations); (None, 0.0) when no canary runs."""
        rows = self.store.query("SELECT version, share FROM aliases WHERE name = 'canary'")
        if not rows or rows[0]["version"] is None:
            return None, 0.0
        return rows[0]["version"], float(rows[0]["share"] or 0.0)

    def alias(self, name: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM aliases WHERE name = ?", [name])
        return rows[0] if rows else None

    def set_alias(self, name: str, version: str | None, share: float = 1.0, by: str = "admin") -> None:
        """Point alias `name` at `version` (live: None = the base model; canary: None = no canary).

        Recorded in alias_history with who did it.
        """
        self.update_aliases({name: (version, share)}, by=by)

    def update_aliases(
        self,
        changes: dict[str, tuple[str | None, float]],
        *,
        by: str = "admin",
        statuses: dict[str, str] | None = None,
    ) -> None:
        """Change several aliases ({name: (version, share)}) and version statuses in one transaction."""
        for name, (version, share) in changes.items():
            if name not in ALIASES:
                raise ValueError(f"alias must be one of {ALIASES}, got {name!r}")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"share must be within 0..1, got {share}")
            if version is not None:
                self.require(version)
        for status in (statuses or {}).values():
            if status not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        now = utc_now()

        def fn(db: Any) -> None:
            for name, (version, share) in changes.items():
                db.execute(
                    """INSERT INTO aliases (name, version, share, updated_at, updated_by)
                       VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(name) DO UPDATE SET version = excluded.version, share = excluded.share,
                       updated_at = excluded.updated_at, updated_by = excluded.updated_by""",
                    [name, version, share, now, by],
                )
                db.execute(
                    "INSERT INTO alias_history (name, version, share, at, by) VALUES (?, ?, ?, ?, ?)",
                    [name, version, share, now, by],
                )
            for other, status in (statuses or {}).items():
                db.execute("UPDATE versions SET status = ? WHERE id = ?", [status, other])

        self.store.write(fn)

    def history(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Alias changes, newest first."""
        if name is None:
            return self.store.query("SELECT * FROM alias_history ORDER BY id DESC LIMIT ?", [limit])
        return self.store.query(
            "SELECT * FROM alias_history WHERE name = ? ORDER BY id DESC LIMIT ?", [name, limit]
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------- tensor checks
def _split_tensor_name(name: str) -> tuple[str, str]:
    """`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` → (module, 'lora_A')."""
    stem = name[len(_PEFT_PREFIX):] if name.startswith(_PEFT_PREFIX) else name
    for kind in ("lora_embedding_A", "lora_embedding_B", "lora_A", "lora_B", "lora_magnitude_vector"):
        marker = f".{kind}"
        if marker in stem:
            return stem.split(marker, 1)[0], kind
    if stem.endswith(".weight"):
        stem = stem[: -len(".weight")]
    return stem.replace(".modules_to_save", "").replace(".original_module", ""), "full"


def _shape_problem(kind: str, shape: tuple[int, ...], base: tuple[int, ...]) -> str | None:
    """Why `shape` doesn't fit the base weight `base` ([out, in] for Linear, [num, dim] for Embedding)."""
    if kind == "full":
        return None if shape == base else "it replaces the whole module"
    if kind == "lora_magnitude_vector":
        return None if len(shape) == 1 and shape[0] == base[0] else f"DoRA magnitude must be [{base[0]}]"
    if len(shape) != 2 or len(base) != 2:
        return "LoRA factors must be 2-D"
    if kind == "lora_A":
        return None if shape[1] == base[1] else f"lora_A must take the base layer's {base[1]} input features"
    if kind == "lora_B":
        return None if shape[0] == base[0] else f"lora_B must give the base layer's {base[0]} output features"
    if kind == "lora_embedding_A":
        return None if shape[1] == base[0] else f"lora_embedding_A must span the {base[0]} embeddings"
    return None if shape[0] == base[1] else f"lora_embedding_B must give the {base[1]}-dim embedding"


def _check_rank_pairs(header: dict[str, Any], where: str) -> None:
    """lora_A's rank (rows) must equal lora_B's rank (columns) for every module."""
    ranks: dict[tuple[str, str], dict[str, int]] = {}
    for name, info in header.items():
        module, kind = _split_tensor_name(name)
        shape = info["shape"]
        if kind in ("lora_A", "lora_embedding_A"):
            ranks.setdefault((module, kind[:-2]), {})["A"] = int(shape[0])
        elif kind in ("lora_B", "lora_embedding_B"):
            ranks.setdefault((module, kind[:-2]), {})["B"] = int(shape[1])
    for (module, _), pair in ranks.items():
        if len(pair) != 2:
            raise AdapterRejectedError(f"{where}: module {module} has only one of its two LoRA factors")
        if pair["A"] != pair["B"]:
            raise AdapterRejectedError(
                f"{where}: module {module} has LoRA rank {pair['A']} in lora_A but {pair['B']} in lora_B"
            )
