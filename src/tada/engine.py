"""The hook engine: one shared mechanism that runs intervention stacks at named sites.

A *site* is a module of the denoiser plus which tensor to read there: its output, or a
keyword input such as ``encoder_hidden_states``. The engine keeps, per site, an ordered
stack of interventions and installs a PyTorch hook on that module only while its stack
is non-empty. A forward pre-hook on the denoiser itself reads the timestep of each call
and sets the :class:`~tada.context.StepContext` that every intervention sees; nothing
is inferred by counting calls. Removing the last intervention removes every hook, which
restores the model exactly.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .context import GuidanceLayout, StepContext
from .errors import SiteError, TadaError
from .interventions import Intervention


@dataclass(frozen=True)
class Site:
    """A named place where an activation can be read or changed.

    ``path`` is relative to the denoiser (``layers.7.cross_attn``; ``""`` is the denoiser
    itself); ``tensor`` is ``"output"`` or the name of a keyword input of that module.
    ``alias`` is the short, stable name artifacts store (``xattn.7``). ``companions`` are
    other keyword inputs that belong with an input (a text input's attention mask): the
    stack sees them in ``ctx.inputs`` and may replace them together with the input.
    """

    alias: str
    path: str
    tensor: str = "output"
    kind: str = "xattn"
    companions: tuple[str, ...] = ()

    @property
    def is_input(self) -> bool:
        return self.tensor != "output"


class SteeringHandle:
    """Removes the interventions it was returned for; also a context manager.

    ``undo`` holds the cleanups of changes a method makes outside the site stacks (a
    weight-space adapter's own module hooks): removing the handle calls each once, last first.
    """

    def __init__(self, engine: HookEngine, entries: list[tuple[Site, int]], undo: Sequence[Callable[[], None]] = ()):
        self._engine = engine
        self._entries = entries
        self._undo = list(undo)

    def remove(self) -> None:
        entries, self._entries = self._entries, []
        undo, self._undo = self._undo, []
        for site, entry_id in entries:
            self._engine._remove_entry(site, entry_id)
        for cleanup in reversed(undo):
            cleanup()

    def __enter__(self) -> SteeringHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class HookEngine:
    """Runs intervention stacks inside one denoiser.

    Args:
        denoiser: the module the sampler calls once per step (and guidance batch).
        layout: how guidance passes are stacked along the batch.
        scheduler_timesteps: returns the scheduler's current timestep tensor.
        timestep_arg: (keyword name, positional index) of the timestep in the
            denoiser's forward call.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        layout: GuidanceLayout,
        scheduler_timesteps: Callable[[], torch.Tensor],
        timestep_arg: tuple[str, int] = ("timestep", 1),
    ):
        self.denoiser = denoiser
        self.layout = layout
        self._scheduler_timesteps = scheduler_timesteps
        self._timestep_arg = timestep_arg
        self._stacks: dict[Site, dict[int, Intervention]] = {}
        self._site_hooks: dict[Site, torch.utils.hooks.RemovableHandle] = {}
        self._denoiser_hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._ids = itertools.count()
        self._ctx: StepContext | None = None
        self._n_samples: int | None = None
        self._prompts: tuple[str, ...] = ()
        self._pass: str | None = None
        self._bypass = 0
        self._ts_ref: torch.Tensor | None = None
        self._ts_values: list[float] = []
        self._ts_index: dict[float, int] = {}

    # ------------------------------------------------------------------ public API
    def add(self, plan: Mapping[Site, Intervention | Iterable[Intervention]]) -> SteeringHandle:
        """Push interventions onto the stacks of one or more sites."""
        entries: list[tuple[Site, int]] = []
        modules = {site: self.module(site) for site in plan}
        for site, interventions in plan.items():
            if isinstance(interventions, Intervention):
                interventions = [interventions]
            stack = self._stacks.setdefault(site, {})
            for intervention in interventions:
                entry_id = next(self._ids)
                stack[entry_id] = intervention
                entries.append((site, entry_id))
            if stack and site not in self._site_hooks:
                self._site_hooks[site] = self._install_site_hook(site, modules[site])
        if self._site_hooks and not self._denoiser_hooks:
            # prepended, so the step context is set before (and cleared after) every site hook,
            # including an output hook on the denoiser itself
            self._denoiser_hooks = [
                self.denoiser.register_forward_pre_hook(self._enter_denoiser, with_kwargs=True, prepend=True),
                self.denoiser.register_forward_hook(self._leave_denoiser, always_call=True),
            ]
        return SteeringHandle(self, entries)

    @contextmanager
    def generation(self, n_samples: int, prompts: Iterable[str] = ()) -> Iterator[None]:
        """Declare how many samples the next sampler run produces (sets guidance rows), and their prompts."""
        previous = self._n_samples, self._prompts
        self._n_samples, self._prompts = n_samples, tuple(prompts)
        try:
            yield
        finally:
            self._n_samples, self._prompts = previous

    @contextmanager
    def guidance_pass(self, kind: str) -> Iterator[None]:
        """Declare the guidance pass of the denoiser calls in this block, for samplers that run the
        conditional and the unconditional pass as separate calls (ACE-Step v1): ``"cond"`` or ``"uncond"``
        (every row of the call is that pass), or ``"both"`` (a doubled batch, split as the layout says).
        Outside such a block the call's batch size decides: a call of ``n_samples`` rows is conditional,
        which is right for single-pass steps and wrong for a separate unconditional call, so an adapter
        whose sampler makes those calls wraps every call in this, never counting them."""
        if kind not in ("cond", "uncond", "both"):
            raise ValueError(f"unknown guidance pass {kind!r}; choose cond, uncond or both")
        previous = self._pass
        self._pass = kind
        try:
            yield
        finally:
            self._pass = previous

    @contextmanager
    def bypassed(self) -> Iterator[None]:
        """Run the denoiser inside this block as if nothing were installed (the stacks stay).

        Interventions use it for the passes they run themselves: capturing what a prompt's
        conditioning looks like, or the extra denoiser calls of score-space steering.
        """
        self._bypass += 1
        try:
            yield
        finally:
            self._bypass -= 1

    def interventions(self) -> list[Intervention]:
        """Every installed intervention, site by site in installation order."""
        return [i for stack in self._stacks.values() for i in stack.values()]

    def prepare(self, model: object, prompts: Sequence[str], **generation: object) -> None:
        """Before a sampler run: give each intervention that depends on the prompts (``prepare``) the
        chance to compute what it needs, such as the conditioning of a decorated prompt."""
        for intervention in self.interventions():
            prepare = getattr(intervention, "prepare", None)
            if prepare is not None:
                with self.bypassed():
                    prepare(model, list(prompts), **generation)

    @property
    def active(self) -> bool:
        return bool(self._site_hooks)

    def module(self, site: Site) -> nn.Module:
        try:
            return self.denoiser.get_submodule(site.path)
        except AttributeError:
            raise SiteError(f"the model has no module {site.path!r} (site {site.alias})") from None

    def clear(self) -> None:
        """Remove every intervention and hook."""
        for site in list(self._stacks):
            for entry_id in list(self._stacks.get(site, {})):
                self._remove_entry(site, entry_id)

    # ------------------------------------------------------------------ hooks
    def _install_site_hook(self, site: Site, module: nn.Module) -> torch.utils.hooks.RemovableHandle:
        if site.is_input:
            name = site.tensor

            def input_hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
                if self._bypass:
                    return None
                if name not in kwargs:
                    raise SiteError(f"site {site.alias}: {site.path} was not called with keyword input {name!r}")
                act = kwargs[name]
                inputs = {key: kwargs.get(key) for key in site.companions}
                new = self._run_stack(site, act, dict(inputs))
                changed = {key: value for key, value in self._ctx.inputs.items() if value is not inputs.get(key)}
                if new is act and not changed:
                    return None
                return args, {**kwargs, **changed, name: new}

            return module.register_forward_pre_hook(input_hook, with_kwargs=True)

        def output_hook(mod: nn.Module, args: tuple, output: object) -> object:
            if self._bypass:
                return None
            act = first_output(output)
            new = self._run_stack(site, act)
            if new is act:
                return None
            return replace_first_output(output, new)

        # on the denoiser itself, run before the hook that clears the step context
        return module.register_forward_hook(output_hook, prepend=module is self.denoiser)

    def _run_stack(self, site: Site, act: torch.Tensor, inputs: dict | None = None) -> torch.Tensor:
        if self._ctx is None:
            raise TadaError(f"site {site.alias} ran outside a denoiser call; steering has no step context")
        ctx = self._ctx
        ctx.site, ctx.original, ctx.inputs = site.alias, act, inputs if inputs is not None else {}
        out = act
        for intervention in self._stacks[site].values():
            out = intervention(out, ctx)
        return out

    def _enter_denoiser(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._bypass:
            return
        if self._n_samples is None:
            raise TadaError(
                "steering is active but the number of samples is unknown: generate through the model "
                "adapter, or wrap the pipeline call in `with model.engine.generation(n_samples):`"
            )
        name, position = self._timestep_arg
        t = kwargs[name] if name in kwargs else args[position]
        step, timestep, num_steps = self._locate(t)
        n_rows = _batch_rows(args, kwargs)
        if self._pass in ("cond", "uncond"):
            if n_rows != self._n_samples:
                raise TadaError(
                    f"a separate {self._pass} pass was declared but the denoiser was called with {n_rows} rows "
                    f"for {self._n_samples} samples"
                )
            every = slice(0, n_rows)
            cond, uncond = (every, None) if self._pass == "cond" else (None, every)
        else:
            cond, uncond = self.layout.rows(n_rows, self._n_samples)
            if self._pass == "both" and uncond is None:
                raise TadaError(f"a doubled guidance batch was declared but the denoiser was called with {n_rows} rows")
        self._ctx = StepContext(
            step, num_steps, timestep, n_rows, cond, uncond, prompts=self._prompts, call=(args, kwargs)
        )

    def _leave_denoiser(self, module: nn.Module, args: tuple, output: object) -> None:
        if not self._bypass:
            self._ctx = None

    def _locate(self, t: torch.Tensor | float) -> tuple[int, float, int]:
        """Map the timestep of a denoiser call to (step index, scheduler timestep, steps)."""
        value = float(t.reshape(-1)[0]) if isinstance(t, torch.Tensor) else float(t)
        ts = self._scheduler_timesteps()
        if ts is not self._ts_ref:
            self._ts_ref = ts
            self._ts_values = [float(x) for x in ts.detach().double().cpu().tolist()]
            self._ts_index = {}
            for i, x in enumerate(self._ts_values):
                self._ts_index.setdefault(x, i)
        step = self._ts_index.get(value)
        if step is None:
            if not self._ts_values:
                raise TadaError("the scheduler has no timesteps set; steering cannot tell the step")
            step = min(range(len(self._ts_values)), key=lambda i: abs(self._ts_values[i] - value))
            span = abs(self._ts_values[0] - self._ts_values[-1]) or 1.0
            if abs(self._ts_values[step] - value) > 0.01 * span:
                raise TadaError(f"denoiser timestep {value:g} is not on the scheduler's schedule")
        return step, self._ts_values[step], len(self._ts_values)

    def _remove_entry(self, site: Site, entry_id: int) -> None:
        stack = self._stacks.get(site)
        if stack is None or entry_id not in stack:
            return
        del stack[entry_id]
        if not stack:
            del self._stacks[site]
            self._site_hooks.pop(site).remove()
        if not self._site_hooks and self._denoiser_hooks:
            for hook in self._denoiser_hooks:
                hook.remove()
            self._denoiser_hooks = []
            self._ctx = None


def first_output(output: object) -> torch.Tensor:
    """The tensor a module returned: the output itself, the first of a tuple, or the first field of a
    diffusers output object (what a denoiser returns with ``return_dict=True``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        return next(iter(output.values()))
    return output[0]


def replace_first_output(output: object, new: torch.Tensor) -> object:
    """``output`` of the same kind with :func:`first_output` replaced by ``new`` (the original is left as it was)."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, Mapping):
        out = copy.copy(output)
        out[next(iter(output))] = new
        return out
    return (new, *output[1:])


def _batch_rows(args: tuple, kwargs: dict) -> int:
    """Rows of the denoiser's main input (first positional arg or ``hidden_states``/``sample``)."""
    for value in itertools.chain(args[:1], (kwargs.get(k) for k in ("hidden_states", "sample"))):
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    raise TadaError("cannot find the denoiser's input batch to locate guidance rows")
