"""The study's HTML: a welcome page, the A/B and MUSHRA trial pages, and the closing page.

A trial page carries what the rater may know as JSON (clip addresses and letters, never condition names)
and a small script that builds the form, counts plays, and sends the answer. The page leaves only when the
server has said the answer is saved; if the server is gone, the answer stays in the form with a note.
"""

from __future__ import annotations

import html
import json

from .design import Study, Trial

STYLE = """
body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em} .progress{color:#666} .stimulus{display:flex;align-items:center;gap:1em;margin:.6em 0}
.stimulus .label{font-weight:bold;width:2.5em} audio{height:32px}
.ref{background:#f3f3f3;padding:.6em;border-radius:6px}
input[type=range]{width:260px} .rating{width:3em;text-align:right} button{font-size:1.1em;padding:.4em 1.4em}
#tada-status{color:#a00;margin:.8em 0;min-height:1.2em} .choice{margin:.8em 0;font-size:1.1em}
.scale{color:#666;font-size:.85em}
"""

AB_HELP = (
    "Listen to the reference, then to A and B. Which of A and B makes this change better: <b>{change}</b>, "
    "while keeping the rest of the reference's music and sounding good?"
)
AB_HELP_PLAIN = (
    "Listen to the reference, then to A and B. Which of A and B does better what was asked of it, while "
    "keeping the rest of the reference's music and sounding good?"
)
MUSHRA_HELP = (
    "Rate the <b>audio quality</b> of each clip against the reference, from 0 (bad) to 100 (as good as the "
    "reference). One of the clips is the reference itself. Judge the sound, not which instruments or style it has."
)

SCRIPT = r"""
const T = JSON.parse(document.getElementById('tada-trial').textContent);
const plays = T.stimuli.map(() => 0), touched = T.stimuli.map(() => false), started = performance.now();
let choice = null;
const status = document.getElementById('tada-status'), submit = document.getElementById('tada-submit');
function missing() {
  if (T.require_listening && plays.some(p => p === 0)) return 'Play every clip first (as much of each as you like).';
  if (T.kind === 'mushra') return touched.every(Boolean) ? '' : 'Move every slider (rate every clip).';
  return choice === null ? 'Choose A or B.' : '';
}
function refresh() { const m = missing(); submit.disabled = m !== ''; status.textContent = m; }
document.querySelectorAll('audio[data-index]').forEach(a => a.addEventListener('play', () => {
  plays[+a.dataset.index] += 1; refresh();
}));
document.querySelectorAll('audio').forEach(a => a.addEventListener('play', () => {
  document.querySelectorAll('audio').forEach(b => { if (b !== a) b.pause(); });
}));
document.querySelectorAll('input[name=choice]').forEach(r => r.addEventListener('change', () => {
  choice = +r.value; refresh();
}));
document.querySelectorAll('input[type=range]').forEach(r => r.addEventListener('input', () => {
  const i = +r.dataset.index; touched[i] = true;
  document.getElementById('tada-value-' + i).textContent = r.value; refresh();
}));
submit.addEventListener('click', async () => {
  if (missing()) return;
  submit.disabled = true; status.textContent = 'Saving...';
  const response = T.kind === 'mushra'
    ? {ratings: T.stimuli.map((_, i) => +document.getElementById('tada-rating-' + i).value)}
    : {choice: choice};
  const body = {trial: T.trial, response: response, plays: plays, ms: performance.now() - started};
  try {
    const r = await fetch(T.answer_url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                         body: JSON.stringify(body)});
    const reply = await r.json();
    if (!r.ok) { status.textContent = 'Not saved: ' + reply.error; submit.disabled = false; return; }
    document.body.dataset.saved = 'yes';
    location.href = reply.next;
  } catch (e) {
    status.textContent = 'Not saved: the study server did not answer. Your answer is still here; '
      + 'press Submit again when it is back.';
    submit.disabled = false;
  }
});
refresh();
"""


def _page(title: str, body: str, script: str = "") -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}{script}</body></html>"
    )


def message_page(title: str, message_html: str) -> str:
    return _page(title, f"<h1>{html.escape(title)}</h1><p>{message_html}</p>")


def welcome_page(study: Study) -> str:
    body = (
        "<h1>Listening test</h1>"
        "<p>You will hear short pieces of music. Each page has a <b>reference</b> and clips made from it. "
        "Some pages ask which of two clips, A or B, makes a requested change better; others ask you to rate "
        "the sound quality of several clips. Use headphones in a quiet room, and keep the volume the same "
        "throughout. Each page needs every clip played before it can be sent. Your answers are saved as you "
        "go; if you stop, the address of your current page brings you back to it.</p>"
        '<form method="post" action="/start"><p><label>Your name or an alias (optional): '
        '<input name="name" id="tada-name" maxlength="80"></label></p>'
        '<p><button id="tada-start" type="submit">Start</button></p></form>'
    )
    return _page("Listening test", body)


def done_page(n: int) -> str:
    return _page(
        "Thank you",
        f'<h1 id="tada-done">Thank you</h1><p>All {n} answers are saved. You can close this page.</p>',
    )


def trial_page(study: Study, rater: str, index: int, plan: list[Trial], answered: int) -> str:
    """Trial ``index`` of ``rater``'s plan as a page; ``answered`` of the plan's trials are done."""
    trial = plan[index]
    item = study.items[trial.item]
    mushra = trial.kind == "mushra"
    letters = [str(i + 1) for i in range(len(trial.stimuli))] if mushra else ["A", "B"]
    data = {
        "trial": index,
        "kind": "mushra" if mushra else "pair",
        "answer_url": f"/r/{rater}/answer",
        "require_listening": study.settings.require_listening,
        "stimuli": letters,
    }
    rows = []
    for i, (letter, condition) in enumerate(zip(letters, trial.stimuli)):
        player = f'<audio controls preload="auto" data-index="{i}" src="/clips/{item.clip(condition)}.wav"></audio>'
        if mushra:
            control = (
                f'<input type="range" min="0" max="100" step="1" value="50" id="tada-rating-{i}" data-index="{i}">'
                f'<span class="rating" id="tada-value-{i}">-</span>'
            )
        else:
            control = ""
        rows.append(f'<div class="stimulus"><span class="label">{letter}</span>{player}{control}</div>')
    if mushra:
        help_html = MUSHRA_HELP
        rows.append('<p class="scale">80-100 excellent, 60-80 good, 40-60 fair, 20-40 poor, 0-20 bad</p>')
    else:
        help_html = AB_HELP.format(change=html.escape(item.change)) if item.change else AB_HELP_PLAIN
        rows.append(
            '<div class="choice">Better: <label><input type="radio" name="choice" value="0" id="tada-choice-a"> A'
            '</label> <label><input type="radio" name="choice" value="1" id="tada-choice-b"> B</label></div>'
        )
    reference = study.items[trial.item].reference
    body = (
        f'<p class="progress">Page {answered + 1} of {len(plan)}</p>'
        f"<h1>{'Rate the sound quality' if mushra else 'Which is better, A or B?'}</h1><p>{help_html}</p>"
        f'<div class="stimulus ref"><span class="label">Ref.</span>'
        f'<audio controls preload="auto" id="tada-reference" src="/clips/{reference}.wav"></audio></div>'
        + "".join(rows)
        + '<div id="tada-status"></div><button id="tada-submit" disabled>Submit</button>'
    )
    payload = json.dumps(data).replace("</", "<\\/")
    script = f'<script type="application/json" id="tada-trial">{payload}</script><script>{SCRIPT}</script>'
    return _page("Listening test", body, script)


__all__ = ["done_page", "message_page", "trial_page", "welcome_page"]
