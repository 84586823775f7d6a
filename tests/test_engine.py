"""The hook engine and interventions on a small in-code denoiser with a cross-attention per block."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tada.context import GuidanceLayout, StepContext
from tada.engine import HookEngine, Site
from tada.errors import SiteError, TadaError
from tada.interventions import AddVector, Capture, ProjectOut, Renormalize, Replace, TimestepTable
from tada.schedules import TimestepFunction, Window, parse_schedule

DIM, TOKENS, TEXT = 8, 5, 3


class CrossAttn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(DIM, DIM)
        self.kv = nn.Linear(DIM, DIM)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        keys = self.kv(encoder_hidden_states)
        weights = torch.softmax(self.q(hidden_states) @ keys.transpose(1, 2), dim=-1)
        return weights @ keys


class ToyDenoiser(nn.Module):
    def __init__(self, n_blocks: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"cross_attn": CrossAttn(), "mlp": nn.Linear(DIM, DIM)}) for _ in range(n_blocks)
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor):
        h = sample + timestep.reshape(-1, 1, 1) / 1000
        for block in self.blocks:
            h = h + block["cross_attn"](h, encoder_hidden_states=encoder_hidden_states)
            h = h + torch.tanh(block["mlp"](h))
        return h


class ToySampler:
    """A guidance sampler stacking (uncond, cond) like Stable Audio and AudioLDM2."""

    def __init__(self, steps: int = 4) -> None:
        self.model = ToyDenoiser()
        self.timesteps = torch.linspace(900, 100, steps)

    def run(self, cond: torch.Tensor, seed: int = 0, guidance: bool = True) -> torch.Tensor:
        n = cond.shape[0]
        x = torch.randn(n, TOKENS, DIM, generator=torch.Generator().manual_seed(seed))
        uncond = torch.zeros_like(cond)
        with torch.no_grad():
            for t in self.timesteps:
                if guidance:
                    out = self.model(
                        torch.cat([x, x]), t.repeat(2 * n), encoder_hidden_states=torch.cat([uncond, cond])
                    )
                    out_u, out_c = out.chunk(2)
                    x = x - 0.1 * (out_u + 3.0 * (out_c - out_u))
                else:
                    x = x - 0.1 * self.model(x, t.repeat(n), encoder_hidden_states=cond)
        return x


@pytest.fixture
def toy():
    sampler = ToySampler()
    engine = HookEngine(sampler.model, GuidanceLayout(("uncond", "cond")), lambda: sampler.timesteps, ("timestep", 1))
    cond = torch.randn(2, TEXT, DIM, generator=torch.Generator().manual_seed(1))
    return sampler, engine, cond


def site(i: int, tensor: str = "output") -> Site:
    alias = f"xattn.{i}" if tensor == "output" else f"xattn_in.{i}"
    return Site(alias, f"blocks.{i}.cross_attn", tensor)


def run(sampler, engine, cond, **kw):
    with engine.generation(cond.shape[0]):
        return sampler.run(cond, **kw)


def test_zero_strength_is_bitwise_identical(toy):
    sampler, engine, cond = toy
    clean = run(sampler, engine, cond)
    with engine.add({site(1): AddVector(torch.randn(DIM), strength=0.0)}):
        assert torch.equal(run(sampler, engine, cond), clean)


def test_removing_hooks_restores_model(toy):
    sampler, engine, cond = toy
    clean = run(sampler, engine, cond)
    handle = engine.add({site(0): AddVector(torch.randn(DIM), 5.0), site(2, "encoder_hidden_states"): Capture()})
    assert not torch.equal(run(sampler, engine, cond), clean)
    handle.remove()
    assert not engine.active
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in sampler.model.modules())
    assert torch.equal(run(sampler, engine, cond), clean)


def test_capture_sees_scheduler_timesteps_and_cond_rows(toy):
    sampler, engine, cond = toy
    cap_cond = Capture(rows="cond", reduce="full")
    cap_uncond = Capture(rows="uncond", reduce="full")
    with engine.add({site(1, "encoder_hidden_states"): [cap_cond, cap_uncond]}):
        run(sampler, engine, cond)
    assert cap_cond.timesteps == [float(t) for t in sampler.timesteps.double()]
    assert cap_cond.steps == [0, 1, 2, 3]
    for step in cap_cond.steps:
        assert torch.equal(cap_cond.records[step], cond)
        assert torch.equal(cap_uncond.records[step], torch.zeros_like(cond))


def test_without_guidance_every_row_is_conditional(toy):
    sampler, engine, cond = toy
    cap = Capture(rows="uncond")
    cap_cond = Capture(rows="cond", reduce="full")
    with engine.add({site(0, "encoder_hidden_states"): [cap, cap_cond]}):
        run(sampler, engine, cond, guidance=False)
    assert cap.records == {} and torch.equal(cap_cond.records[0], cond)


def test_cond_mode_changes_only_conditional_rows(toy):
    sampler, engine, cond = toy
    vec = torch.randn(DIM)
    before, after = Capture(rows="both", reduce="full"), Capture(rows="both", reduce="full")
    with engine.add({site(1): [before, AddVector(vec, 2.5, rows="cond"), after]}):
        run(sampler, engine, cond)
    for step in before.records:
        b, a = before.records[step], after.records[step]
        assert torch.equal(a[:2], b[:2])  # unconditional rows untouched
        torch.testing.assert_close(a[2:] - b[2:], (2.5 * vec).expand_as(b[2:]))


def test_both_mode_and_uncond_mode(toy):
    sampler, engine, cond = toy
    vec = torch.randn(DIM)
    for mode, changed in (("both", slice(0, 4)), ("uncond", slice(0, 2))):
        before, after = Capture(rows="both", reduce="full"), Capture(rows="both", reduce="full")
        with engine.add({site(0): [before, AddVector(vec, 1.0, rows=mode), after]}):
            run(sampler, engine, cond)
        diff = (after.records[0] - before.records[0]).abs().sum(dim=(1, 2))
        assert (diff[changed] > 0).all() and (diff.sum() == diff[changed].sum())


def test_patching_with_clean_input_equals_clean_run(toy):
    sampler, engine, cond = toy
    clean = run(sampler, engine, cond)
    cache = Capture(rows="cond", reduce="full")
    with engine.add({site(1, "encoder_hidden_states"): cache}):
        run(sampler, engine, cond)
    corrupt = torch.randn_like(cond)
    corrupted = run(sampler, engine, corrupt)
    patched_sites = {site(i, "encoder_hidden_states"): Replace(cache) for i in range(3)}
    with engine.add(patched_sites):
        assert torch.equal(run(sampler, engine, corrupt), clean)
    with engine.add({site(1, "encoder_hidden_states"): Replace(cache)}):
        partial = run(sampler, engine, corrupt)
    assert not torch.equal(partial, clean) and not torch.equal(partial, corrupted)


def test_stacked_handles_compose_and_remove_independently(toy):
    sampler, engine, cond = toy
    v1, v2 = torch.randn(DIM), torch.randn(DIM)
    with engine.add({site(1): AddVector(v1 + v2, 1.0)}):
        together = run(sampler, engine, cond)
    h1 = engine.add({site(1): AddVector(v1, 1.0)})
    h2 = engine.add({site(1): AddVector(v2, 1.0)})
    torch.testing.assert_close(run(sampler, engine, cond), together)
    h1.remove()
    with engine.add({site(1): AddVector(v2, 1.0)}):
        only_v2_twice = run(sampler, engine, cond)
    h2.remove()
    assert not engine.active
    assert not torch.equal(only_v2_twice, together)


def test_renormalize_keeps_token_norms(toy):
    sampler, engine, cond = toy
    before, after = Capture(rows="cond", reduce="full"), Capture(rows="cond", reduce="full")
    with engine.add({site(2): [before, AddVector(torch.randn(DIM), 10.0), Renormalize(), after]}):
        run(sampler, engine, cond)
    for step in before.records:
        torch.testing.assert_close(after.records[step].norm(dim=-1), before.records[step].norm(dim=-1))
        assert not torch.allclose(after.records[step], before.records[step])


def test_project_out_removes_the_direction(toy):
    sampler, engine, cond = toy
    d = torch.randn(DIM)
    after = Capture(rows="cond", reduce="full")
    with engine.add({site(0): [ProjectOut(d, 1.0), after]}):
        run(sampler, engine, cond)
    assert (after.records[0] @ (d / d.norm())).abs().max() < 1e-5


def test_window_schedule_acts_only_inside_window(toy):
    sampler, engine, cond = toy
    before, after = Capture(rows="cond", reduce="full"), Capture(rows="cond", reduce="full")
    with engine.add({site(1): [before, AddVector(torch.randn(DIM), 3.0, schedule=Window(0.5, 1.0)), after]}):
        run(sampler, engine, cond)
    changed = [not torch.equal(before.records[s], after.records[s]) for s in range(4)]
    assert changed == [False, False, True, True]


def test_timestep_function_schedule_and_parse():
    ctx = StepContext(step=1, num_steps=4, timestep=250.0, n_rows=1, cond=slice(0, 1))
    assert TimestepFunction(lambda t: t / 1000)(ctx) == 0.25
    assert parse_schedule("0-0.5")(ctx) == 1.0 and parse_schedule("0.5-1")(ctx) == 0.0
    with pytest.raises(TadaError):
        parse_schedule("late")
    with pytest.raises(TadaError):
        Window(0.8, 0.2)


def test_timestep_table_interpolates_and_renormalises():
    ts = torch.tensor([900.0, 100.0])
    values = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    table = TimestepTable(ts, values, unit_norm=True)
    mid = table.at(500.0, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(mid, torch.tensor([0.5**0.5, 0.5**0.5]))
    assert torch.equal(table.at(2000.0, torch.device("cpu"), torch.float32), values[0])
    assert torch.equal(table.at(0.0, torch.device("cpu"), torch.float32), values[1])


def test_unknown_site_and_missing_context_errors(toy):
    sampler, engine, cond = toy
    with pytest.raises(SiteError, match="no module"):
        engine.add({Site("xattn.9", "blocks.9.cross_attn"): Capture()})
    assert not engine.active
    with engine.add({site(0): Capture()}):
        with pytest.raises(TadaError, match="number of samples is unknown"):
            sampler.run(cond)
    with pytest.raises(TadaError, match="unknown guidance mode"):
        AddVector(torch.randn(DIM), rows="negative")
    with pytest.raises(TadaError, match="finite"):
        AddVector(torch.randn(DIM), strength=float("nan"))


def test_wrong_batch_is_reported(toy):
    sampler, engine, cond = toy
    with engine.add({site(0): Capture()}):
        with engine.generation(3), pytest.raises(TadaError, match="called with 4 rows for 3 samples"):
            sampler.run(cond)


class SeparatePassSampler(ToySampler):
    """Guidance as ACE-Step v1 runs it: the conditional and the unconditional pass as separate calls, the
    unconditional one perturbed (its queries scaled in some blocks), and single-pass steps outside a
    guidance interval; every call declared to the engine."""

    def run_separate(self, engine: HookEngine, cond: torch.Tensor, interval: tuple[int, int] = (1, 3)):
        n = cond.shape[0]
        x = torch.randn(n, TOKENS, DIM, generator=torch.Generator().manual_seed(0))
        seen = []
        with torch.no_grad(), engine.generation(n):
            for i, t in enumerate(self.timesteps):
                with engine.guidance_pass("cond"):
                    out_c = self.model(x, t.repeat(n), encoder_hidden_states=cond)
                seen.append((i, "cond"))
                if interval[0] <= i < interval[1]:
                    hook = self.model.blocks[1]["cross_attn"].q.register_forward_hook(lambda m, a, o: o * 0.01)
                    try:
                        with engine.guidance_pass("uncond"):
                            out_u = self.model(x, t.repeat(n), encoder_hidden_states=torch.zeros_like(cond))
                    finally:
                        hook.remove()
                    seen.append((i, "uncond"))
                    out_c = out_u + 3.0 * (out_c - out_u)
                x = x - 0.1 * out_c
        return x, seen


def test_declared_separate_passes_give_each_call_its_rows_and_step():
    sampler = SeparatePassSampler()
    engine = HookEngine(sampler.model, GuidanceLayout(("cond", "uncond")), lambda: sampler.timesteps, ("timestep", 1))
    cond = torch.randn(2, TEXT, DIM, generator=torch.Generator().manual_seed(1))
    clean, seen = sampler.run_separate(engine, cond)
    assert seen == [(0, "cond"), (1, "cond"), (1, "uncond"), (2, "cond"), (2, "uncond"), (3, "cond")]

    class Record(Capture):
        def __call__(self, act, ctx):
            self.calls.append((ctx.step, ctx.cond, ctx.uncond))
            return act

    record = Record(rows="both")
    record.calls = []
    with engine.add({site(0): record}):
        again, _ = sampler.run_separate(engine, cond)
    assert torch.equal(again, clean)  # a recording intervention changes nothing
    every = slice(0, 2)
    assert record.calls == [
        (0, every, None),
        (1, every, None),
        (1, None, every),
        (2, every, None),
        (2, None, every),
        (3, every, None),
    ]

    def by_pass(steering):
        spy = PassSpy()
        with engine.add({site(0): [*steering, spy]}):
            out, _ = sampler.run_separate(engine, cond)
        return out, spy.outputs

    _, plain = by_pass([])
    _, up = by_pass([AddVector(torch.ones(DIM), 1.0, rows="uncond")])
    # step 0 has no unconditional call, so step 1 starts from the same latents: the vector is in the
    # unconditional call's output alone
    assert torch.equal(up[(0, "cond")], plain[(0, "cond")]) and torch.equal(up[(1, "cond")], plain[(1, "cond")])
    assert torch.allclose(up[(1, "uncond")] - plain[(1, "uncond")], torch.ones(2, TOKENS, DIM))
    _, down = by_pass([AddVector(torch.ones(DIM), 1.0, rows="cond")])
    assert torch.allclose(down[(0, "cond")] - plain[(0, "cond")], torch.ones(2, TOKENS, DIM))


class PassSpy(Capture):
    """The site's output per (step, pass) of each call, as the stack hands it on."""

    def __init__(self):
        super().__init__(rows="both")
        self.outputs = {}

    def __call__(self, act, ctx):
        self.outputs[(ctx.step, "cond" if ctx.cond is not None else "uncond")] = act.clone()
        return act


def test_a_declared_pass_that_does_not_match_the_batch_is_reported(toy):
    sampler, engine, cond = toy
    with engine.add({site(0): AddVector(torch.ones(DIM), 0.0)}), engine.generation(2):
        with engine.guidance_pass("uncond"), pytest.raises(TadaError, match="separate uncond pass was declared"):
            sampler.model(
                torch.zeros(4, TOKENS, DIM), torch.tensor([900.0] * 4), encoder_hidden_states=torch.zeros(4, TEXT, DIM)
            )
        with engine.guidance_pass("both"), pytest.raises(TadaError, match="doubled guidance batch was declared"):
            sampler.model(torch.zeros(2, TOKENS, DIM), torch.tensor([900.0] * 2), encoder_hidden_states=cond)
    with pytest.raises(ValueError, match="unknown guidance pass"):
        with engine.guidance_pass("sideways"):
            pass
