"""Training configuration: dataclasses validated in `__post_init__`, serialisable for manifests.

    from training.config import JobConfig
    config = JobConfig.from_dict({"sft": {"max_steps": 40}})   # unknown keys are an error
    config.to_dict()                                            # plain JSON types

Defaults are sized for SmolLM2-135M on 2 CPU cores: a job of ~200 curated items should finish in about
5 minutes and still move behaviour (FACTS.md: 3 epochs over 80 corrections barely moved the model, 8 moved
it a lot; DPO on top over-shoots quickly, so the preference stage is short and gentle). The number of steps
scales with the data (`epochs`) and is capped (`max_steps`) so a big dataset cannot blow the time budget.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

_T = TypeVar("_T")

PREFERENCE_CHOICES = ("auto", "dpo", "kto", "none")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _from_dict(cls: type[_T], data: dict[str, Any], where: str) -> _T:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    # A typo in a config key would otherwise silently train with the default.
    _check(not unknown, f"unknown {where} keys {unknown}; known keys: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA adapter trained on top of the frozen base model."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        _check(
            isinstance(self.r, int) and 1 <= self.r <= 256,
            f"lora.r must be an integer in 1..256, got {self.r!r}",
        )
        _check(self.alpha > 0, f"lora.alpha must be positive, got {self.alpha!r}")
        _check(0.0 <= self.dropout < 1.0, f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        # JSON gives lists; keep the frozen dataclass hashable.
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _check(
            bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
            f"lora.target_modules must be a non-empty list of module names, got {self.target_modules!r}",
        )

    def to_peft(self) -> Any:
        """The equivalent `peft.LoraConfig` (imported lazily: the server need not load peft for this)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


@dataclass(frozen=True)
class StageSettings:
    """What every training stage shares. Steps = ceil(items * epochs / batch_size), capped at max_steps."""

    stage: ClassVar[str] = "stage"

    epochs: float = 1.0
    max_steps: int = 20
    batch_size: int = 4
    learning_rate: float = 5e-5
    max_length: int = 512
    seed: int = 0
    save_steps: int = 10  # checkpoint interval: a killed job resumes from the last one
    # Warmup starts at lr 0, so its first step is wasted; a LoRA starts at B = 0 and needs none.
    warmup_ratio: float = 0.0

    def __post_init__(self) -> None:
        s = self.stage
        _check(self.epochs > 0, f"{s}.epochs must be positive, got {self.epochs!r}")
        _check(
            isinstance(self.max_steps, int) and self.max_steps >= 1,
            f"{s}.max_steps must be an integer >= 1, got {self.max_steps!r}",
        )
        _check(
            isinstance(self.batch_size, int) and 1 <= self.batch_size <= 256,
            f"{s}.batch_size must be an integer in 1..256, got {self.batch_size!r}",
        )
        _check(0 < self.learning_rate < 1, f"{s}.learning_rate must be in (0, 1), got {self.learning_rate!r}")
        _check(
            isinstance(self.max_length, int) and 16 <= self.max_length <= 32768,
            f"{s}.max_length must be an integer in 16..32768 tokens, got {self.max_length!r}",
        )
        _check(isinstance(self.seed, int), f"{s}.seed must be an integer, got {self.seed!r}")
        _check(
            isinstance(self.save_steps, int) and self.save_steps >= 1,
            f"{s}.save_steps must be an integer >= 1, got {self.save_steps!r}",
        )
        _check(
            0.0 <= self.warmup_ratio < 1.0, f"{s}.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}"
        )

    def planned_steps(self, items: int) -> int:
        """Optimizer steps for `items` training rows: scales with the data, capped at max_steps."""
        if items <= 0:
            return 0
        return max(1, min(self.max_steps, math.ceil(items * self.epochs / self.batch_size)))

    def warmup_steps(self, steps: int) -> int:
        return int(steps * self.warmup_ratio)


@dataclass(frozen=True)
class SFTSettings(StageSettings):
    """Supervised fine-tuning on (prompt → answer) pairs; loss on the answer tokens only.

    8 epochs / 60 steps at lr 3e-4: 60 steps of 8 rows is ~4 min on 2 cores for SmolLM2-135M, which is about
    where FACTS.md saw behaviour move; the higher rate compensates for the step cap on bigger datasets.
    """

    stage: ClassVar[str] = "sft"

    epochs: float = 8.0
    max_steps: int = 60
    batch_size: int = 8
    learning_rate: float = 3e-4
    max_length: int = 512
    seed: int = 0
    save_steps: int = 10
    warmup_ratio: float = 0.0


@dataclass(frozen=True)
class DPOSettings(StageSettings):
    """Direct preference optimisation on (chosen ≻ rejected) pairs; the reference is the model it starts from.

    Deliberately short: FACTS.md saw one DPO epoch on top of SFT collapse answers into one vacuous sentence.
    """

    stage: ClassVar[str] = "dpo"

    epochs: float = 1.0
    max_steps: int = 16
    batch_size: int = 4
    learning_rate: float = 5e-5
    max_length: int = 512
    seed: int = 0
    save_steps: int = 8
    warmup_ratio: float = 0.0
    beta: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.beta > 0, f"dpo.beta must be positive, got {self.beta!r}")


@dataclass(frozen=True)
class KTOSettings(StageSettings):
    """KTO on single thumbs up/down answers (no pairs needed).

    Batch >= 2: KTO estimates its KL term by pairing rows within a batch.
    """

    stage: ClassVar[str] = "kto"

    epochs: float = 1.0
    max_steps: int = 20
    batch_size: int = 4
    learning_rate: float = 5e-5
    max_length: int = 512
    seed: int = 0
    save_steps: int = 10
    warmup_ratio: float = 0.0
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            self.batch_size >= 2,
            f"kto.batch_size must be >= 2 (KTO's KL estimate needs pairs), got {self.batch_size}",
        )
        _check(self.beta > 0, f"kto.beta must be positive, got {self.beta!r}")
        _check(
            self.desirable_weight > 0 and self.undesirable_weight > 0,
            "kto.desirable_weight and kto.undesirable_weight must be positive",
        )


_STAGES: dict[str, type[StageSettings]] = {"sft": SFTSettings, "dpo": DPOSettings, "kto": KTOSettings}


@dataclass(frozen=True)
class JobConfig:
    """One training job: which stages run, on how much data, with how many cores.

    threads: torch threads for the job; 0 = every core this process may use. The server should pass what it
    can spare: FACTS.md measured 30x slowdowns when server and trainer together ask for more than the cores.
    instruction_mix_ratio: share of the SFT set drawn from the shipped instruction set, so tuning on feedback
    does not erase instruction following (0.25 with 150 feedback items adds 50 instructions).
    preference: "auto" = DPO when there are >= min_pref_items pairs, else KTO when there are >= min_kto_items
    thumbs; "dpo" / "kto" force one; "none" skips the preference stage.
    step_pause_s: sleep after every optimizer step, to leave CPU to chats on a busy box.
    init_from_parent: start from the parent version's adapter instead of a fresh LoRA.
    """

    threads: int = 0
    min_sft_items: int = 8
    min_pref_items: int = 8
    min_kto_items: int = 8
    instruction_mix_ratio: float = 0.25
    preference: str = "auto"
    step_pause_s: float = 0.0
    init_from_parent: bool = False
    sft: SFTSettings = field(default_factory=SFTSettings)
    dpo: DPOSettings = field(default_factory=DPOSettings)
    kto: KTOSettings = field(default_factory=KTOSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        _check(
            isinstance(self.threads, int) and 0 <= self.threads <= 256,
            f"threads must be an integer in 0..256 (0 = all cores), got {self.threads!r}",
        )
        for name in ("min_sft_items", "min_pref_items", "min_kto_items"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        _check(
            0.0 <= self.instruction_mix_ratio < 1.0,
            "instruction_mix_ratio must be in [0, 1) (the instructions' share of the SFT set), "
            f"got {self.instruction_mix_ratio!r}",
        )
        _check(
            self.preference in PREFERENCE_CHOICES,
            f"preference must be one of {PREFERENCE_CHOICES}, got {self.preference!r}",
        )
        _check(
            0.0 <= self.step_pause_s <= 60.0,
            f"step_pause_s must be in 0..60 seconds, got {self.step_pause_s!r}",
        )
        # from_dict may hand us plain dicts for the nested settings.
        nested: dict[str, type] = {**_STAGES, "lora": LoraSettings}
        for name, cls in nested.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _from_dict(cls, value, name))
            elif not isinstance(value, cls):
                raise ValueError(f"{name} must be a {cls.__name__} or a dict, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lora"]["target_modules"] = list(self.lora.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobConfig:
        return _from_dict(cls, dict(data or {}), "job config")

    def replace(self, **changes: Any) -> JobConfig:
        return dataclasses.replace(self, **changes)
