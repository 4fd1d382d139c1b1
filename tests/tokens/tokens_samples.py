"""Conversations shared by the tokens tests."""
from __future__ import annotations

SYSTEM = "You are Elena, a warm financial planner."

TWO_TURNS = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hello — how are you?"},
    {"role": "assistant", "content": "Fine → thanks.\nAnd you?"},
    {"role": "user", "content": "Good. Should I pay off my mortgage early?"},
    {"role": "assistant", "content": "Let's look at the rate first: 3.1% vs. what you'd earn elsewhere."},
]

MULTILINE = [
    {"role": "system", "content": "Line one.\nLine two.\n\n- bullet\n- bullet"},
    {"role": "user", "content": "Here is my budget:\n\nRent: $1,800\nFood: $600\n\nIs this OK?"},
    {"role": "assistant", "content": "Yes — mostly.\n\n1. Rent is 30 % of income → fine.\n2. Food: trim a bit.\n\nQuestions?"},
    {"role": "user", "content": "Café, naïve, Zürich, 日本語, emoji 🚀 and “quotes”."},
    {"role": "assistant", "content": "Noted: “quotes” — and 🚀.\tTabs too."},
]

NO_SYSTEM = [
    {"role": "user", "content": "What is a Roth IRA?"},
    {"role": "assistant", "content": "A retirement account funded with after-tax money."},
]

CONVERSATIONS = {"two_turns": TWO_TURNS, "multiline": MULTILINE, "no_system": NO_SYSTEM}
