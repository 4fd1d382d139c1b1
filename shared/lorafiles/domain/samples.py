"""Seeded generator of realistic synthetic enriched conversations (v4 Individual JSON).

Used by ``lorafiles demo``, the tests and the benchmarks to make data of any size. The
output has the same keys, nesting and key order as the files written by the live
enrichment service (``dataset_metadata``, ``consultant_profile``, ``training_pairs``,
``input_parameters``), and the real defects can be switched on by name (see ``QUIRKS``).
The same seed always gives byte-identical output. Pure: no I/O except ``write_sample_dir``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["QUIRKS", "PERSONAS", "ARCS", "TOPICS", "generate_conversation",
           "generate_conversations", "dumps_enriched", "write_sample_dir", "conversation_uuid"]

QUIRKS = frozenset({
    # defects the builder must accept with a warning
    "truncated_backslash", "double_escaped_newline", "history_without_role",
    "input_repeats_history", "missing_scaffolding_keys", "low_quality", "varied_quality",
    # blocking defects, for negative tests
    "non_sequential_turns", "no_trainable_pair", "wrong_shape",
})
SCAFFOLDING_KEYS = ("persona_archetype", "emotional_arc", "emotional_arc_key",
                    "training_topic", "training_topic_key")
_ID_NS = uuid.UUID("6f1c2a5e-8d9b-4c3e-9a57-2b6e1f0d4c81")  # stable ids for persona/arc/topic rows

CONSULTANT: dict[str, Any] = {
    "name": "Elena Morales, CFP",
    "business": "Pathways Financial Planning",
    "expertise": "fee-only financial planning for mid-career professionals",
    "years_experience": 15,
    "core_philosophy": {
        "principle_1": "Money is emotional - always acknowledge feelings before facts",
        "principle_2": "Create judgment-free space - normalize struggles explicitly",
        "principle_3": "Education-first - teach the 'why' not just the 'what'",
        "principle_4": "Progress over perfection - celebrate small wins",
        "principle_5": "Values-aligned decisions - personal context over generic rules",
    },
    "communication_style": {
        "tone": "warm, professional, never condescending",
        "techniques": ["acknowledge emotions explicitly", "use metaphors and stories for complex concepts",
                       "provide specific numbers over abstractions", "ask permission before educating",
                       "celebrate progress and small wins"],
        "avoid": ["financial jargon without explanation", "assumptions about knowledge level",
                  "judgment of past financial decisions", "overwhelming with too many options",
                  "generic platitudes without specifics"],
    },
}
SYSTEM_PROMPT = (
    "You are an emotionally intelligent financial planning chatbot representing Elena Morales, CFP of "
    "Pathways Financial Planning. Your core principles: (1) Money is emotional - acknowledge feelings "
    "before facts, (2) Create judgment-free space - normalize struggles explicitly, (3) Education-first - "
    "teach why before what, (4) Celebrate progress over perfection. When you detect shame or anxiety, "
    "validate it before giving advice. Break complex concepts into single steps, prefer specific numbers "
    "over abstractions, ask permission before educating, and keep a warm, professional tone.")

# key -> (name, archetype title, partner, background)
PERSONAS: dict[str, tuple[str, str, str, str]] = {
    "anxious_planner": ("Jennifer Martinez", "The Anxious Planner", "Carlos",
        "Age 42, female, Suburban, married with children; Careful saver who tracks every dollar in a "
        "spreadsheet. Worries about worst-case scenarios and second-guesses decisions even when the "
        "numbers look fine. Wants certainty before acting."),
    "overwhelmed_avoider": ("Marcus Chen", "The Overwhelmed Avoider", "Devon",
        "Age 37, male, Urban/Suburban, single or married without kids; High earner with complex "
        "compensation (RSUs, stock options). Good income but paralyzed by the number of decisions, "
        "leaves statements unopened and feels behind despite doing well."),
    "pragmatic_optimist": ("David Chen", "The Pragmatic Optimist", "Sarah",
        "Age 35, male, Urban/Suburban, married or partnership; Modest but stable income. Makes "
        "values-driven decisions, is hopeful about the future but practical about present "
        "constraints, and is willing to make tradeoffs he understands."),
}
# key -> (display name, template code, template title, phases, user emotions, assistant emotions,
#         learning objectives, what the client leaves with)
ARCS: dict[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {
    "confusion_to_clarity": ("Confusion → Clarity", "educational", "Confusion → Clarity - Education Focus",
        ("initial_opportunity_exploration", "initial_confusion_breakthrough", "initial_crisis_navigation"),
        ("confusion", "curiosity", "clarity", "confidence"), ("reassurance", "guidance", "clarity", "encouragement"),
        ("hsa_vs_fsa_decision",), "a clear decision framework instead of conflicting advice"),
    "shame_to_acceptance": ("Shame → Acceptance", "therapeutic", "Shame → Acceptance - Financial Trauma",
        ("initial_shame_revelation", "initial_shame_disclosure", "initial_crisis_disclosure",
         "initial_shame_revelation_and_normalization"),
        ("shame", "vulnerability", "relief", "acceptance"), ("compassion", "validation", "encouragement", "empowerment"),
        ("no_retirement_at_45",), "self-compassion and one concrete step instead of self-blame"),
    "fear_to_confidence": ("Fear → Confidence", "anxiety_management", "Anxiety → Confidence - Investment Anxiety",
        ("initial_opportunity_exploration",),
        ("anxiety", "cautious_hope", "analytical_engagement", "confidence"),
        ("compassion", "educational_support", "confidence_building", "empowerment"),
        ("market_crash_fears",), "a plan that separates real preparedness from 2am worry"),
    "overwhelm_to_empowerment": ("Overwhelm → Empowerment", "complexity_management",
        "Overwhelm → Empowerment - Complexity Breakdown",
        ("initial_opportunity_exploration", "initial_overwhelm_to_empowerment", "overwhelm_to_empowerment",
         "initial_overwhelm_breakdown", "values_alignment_exploration"),
        ("overwhelm", "clarity", "determination", "empowerment"), ("validation", "clarity", "encouragement", "empowerment"),
        (), "a short, ordered list instead of a wall of decisions"),
    "couple_conflict_to_alignment": ("Couple Conflict → Alignment", "conflict_resolution",
        "Couple Conflict → Alignment - Money Values",
        ("couple_conflict_to_alignment", "couple_conflict_resolution", "initial_opportunity_exploration"),
        ("frustration", "openness", "clarity", "partnership_confidence"), ("validation", "relief", "clarity", "empowerment"),
        ("wedding_debt_vs_house",), "a shared plan that honours both partners' priorities"),
}
# key -> (name, situation (client's words), goal, outcome, facts, steps)
TOPICS: dict[str, tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    "mortgage_payoff_strategy": ("Accelerated Mortgage Payoff",
        "we owe about {amt} on the house at {rate}% and everyone has a different opinion on whether extra money should go there",
        "decide whether to pay the mortgage down early or invest the difference",
        "understands the guaranteed return of prepaying versus expected market returns and picks a split that fits the family",
        ("Every extra dollar toward a {rate}% mortgage earns exactly {rate}% — guaranteed, no market risk. Investing it might earn more over twenty years, or it might not, and that uncertainty has a real cost for some people.",
         "There is no universally right answer here — only the one that fits your cash cushion, your retirement savings rate and how much sleeping well is worth to you."),
        ("confirm the emergency fund covers three to six months", "make sure you capture the full 401k match",
         "pick a monthly split, for example 60% invest → 40% prepay")),
    "grandparent_529": ("Grandparent 529 Contributions",
        "my parents offered to put {amt} into a 529 for the kids and I feel like I should have done this myself years ago",
        "coordinate a grandparent's 529 gift with the family's own college savings",
        "sees the grandparent gift as support rather than a verdict and sets up one coordinated 529 plan",
        ("Grandparent-owned 529s no longer hurt financial aid the way they used to under the old FAFSA rules, so a lot of the scary advice online is simply outdated.",
         "Many states give a tax deduction for 529 contributions, and the annual gift exclusion lets each grandparent give a meaningful amount with no extra paperwork."),
        ("decide who owns the account", "check your state's 529 deduction", "automate a small monthly contribution of your own")),
    "eldercare_costs": ("Planning for Eldercare Expenses",
        "my dad had a fall last month — he's okay — but assisted living near them runs about {amt} a year and I can't stop running the numbers",
        "plan for potential eldercare expenses for both parents",
        "gains a framework for eldercare cost planning and separates objective preparedness from anxiety",
        ("Most eldercare costs arrive gradually, not all at once: a few hours of help a week, then more. Planning for the realistic path is very different from planning for the worst headline number.",
         "Your parents' own assets, Medicare rules and any long-term care coverage come first; your contribution is usually a backstop, not the whole bill."),
        ("have one calm conversation with your parents about their wishes", "list their income, assets and coverage on one page",
         "set a monthly eldercare reserve you can live with")),
    "roth_ira_conversion": ("Roth IRA Conversion Strategy",
        "I have about {amt} in a traditional IRA and keep reading I should convert it to a Roth, but I have no idea what the tax bill would be",
        "understand whether a Roth conversion makes sense this year",
        "understands how partial conversions fill a tax bracket and decides on a first, modest conversion",
        ("A conversion isn't all-or-nothing. Converting just enough to fill your current bracket lets you pay tax at a rate you know, instead of guessing at future rates.",
         "The tax on a conversion is due for the year you convert, so paying it from cash outside the IRA is what makes the math work."),
        ("find your current marginal bracket", "estimate a conversion that stays inside it", "set the tax money aside before converting")),
    "long_term_care": ("Long-Term Care Planning",
        "I'm {age} and the long-term care insurance mailers quote around {small} a month — I can't tell if it's a necessity or a trap",
        "understand long-term care options before premiums rise",
        "compares self-funding, hybrid policies and traditional coverage and knows what question to answer first",
        ("Long-term care planning is really a question of who pays if care is needed for a few years: you, an insurer, or a mix. Each option trades premium certainty for flexibility.",
         "Hybrid life/LTC policies cost more up front but never 'waste' the premium, which matters a lot to people who hate paying for something they might not use."),
        ("estimate what two years of care would cost locally", "check what your savings could cover on their own", "request quotes for one hybrid and one traditional policy")),
    "student_loan_payoff": ("Student Loan Repayment Strategy",
        "I still have {amt} in student loans at {rate}% and I feel like an adult who never finished growing up",
        "build a realistic student loan payoff plan",
        "sees the loans as a solvable math problem and picks a repayment method they can sustain",
        ("Your loans are a balance and an interest rate — not a measure of your worth. At {rate}%, every extra {small} a month saves real interest and shortens the timeline noticeably.",
         "Income-driven plans, refinancing and the avalanche method each fit a different situation; the best one is the one you will actually stick with."),
        ("list every loan with its rate", "choose avalanche or snowball on purpose", "automate one extra payment a month")),
    "ignored_401k": ("Optimizing Neglected 401k",
        "I just realized my old employer's 401k with about {amt} has been sitting in a money market fund for four years",
        "get an old, neglected 401k invested properly",
        "rolls the old 401k over or reinvests it with a simple target-date allocation",
        ("Sitting in cash isn't a disaster — it's a fixable leak. The money is all still there; it just hasn't been growing as fast as it could.",
         "A target-date fund is a perfectly respectable choice for someone who wants one decision instead of twenty."),
        ("log in and confirm the balance", "choose rollover or stay-and-reinvest", "pick one diversified fund")),
    "estate_planning_basics": ("Essential Estate Planning",
        "we have kids and no will, no named guardian, nothing — and I know that's bad",
        "put the essential estate planning documents in place",
        "understands the four essential documents and schedules the first one",
        ("The essentials are shorter than people fear: a will, a named guardian for the kids, beneficiary designations, and powers of attorney.",
         "Beneficiary designations on retirement accounts and life insurance override the will, so checking them takes ten minutes and fixes a big share of the risk."),
        ("update beneficiary designations this week", "agree on a guardian together", "book a flat-fee attorney for the will")),
    "esg_investing": ("ESG and Values-Based Investing",
        "I want my {amt} in savings to stop funding companies I don't believe in, but I'm scared I'll sacrifice returns",
        "align investments with personal values without derailing the plan",
        "understands ESG fund costs and tradeoffs and moves one account into a values-aligned fund",
        ("Values-based funds range from light screening to strict exclusion. Broad ESG index funds have tracked the market closely, while narrow themes swing much more.",
         "The costs to watch are fees and concentration; a broad fund with a low expense ratio keeps most of the diversification you have today."),
        ("name the two or three values that matter most", "compare expense ratios of two broad ESG funds", "start with one account, not everything")),
    "hiding_financial_problems": ("Financial Transparency in Relationships",
        "I've been hiding about {amt} of credit card debt from {partner} for almost a year",
        "find a way to tell their partner about hidden debt",
        "plans an honest conversation with their partner and a joint payoff plan",
        ("Financial secrets usually start as protection — of a partner, or of ourselves — not as betrayal. Naming that helps the conversation start from care instead of blame.",
         "Couples who make a shared, visible plan after a disclosure often end up talking about money more openly than before it happened."),
        ("write down the full balance and rates", "choose a calm time to talk", "bring a draft payoff plan to the conversation")),
    "career_change_income_reduction": ("Career Change with Income Reduction",
        "I want to leave my job for teaching, which means going from {amt} to roughly half of that",
        "plan a career change that comes with a lower income",
        "builds a transition budget and a runway target that make the change feel possible",
        ("A pay cut is a budgeting problem with a timeline. Living on the future salary for six months before the switch tells you more than any spreadsheet.",
         "A runway of six to nine months of the new lower expenses turns a leap into a step."),
        ("build the budget at the new salary", "test-drive it for three months", "set a runway target and a date")),
    "negotiating_compensation": ("Compensation Negotiation Strategy",
        "I have an offer on the table at {amt} and I have never negotiated anything in my life",
        "prepare to negotiate a job offer",
        "anchors the negotiation in market data and practices a short, confident ask",
        ("Employers expect a counteroffer; a polite, specific ask almost never gets an offer withdrawn. Over a career, an extra 5% compounds into a surprising amount.",
         "Total compensation includes base, bonus, equity, retirement match and time off — sometimes the easiest win isn't salary at all."),
        ("gather three market data points", "decide your number and your walk-away", "practise the ask out loud once")),
    "financial_organization": ("Financial Document Organization",
        "our paperwork is a disaster — statements in three email accounts, a shoebox of receipts, and I don't even know all our passwords",
        "get the household's financial documents organized",
        "sets up a one-page account inventory and a simple filing system",
        ("Organization isn't about being a tidy person. It's a one-page map: every account, where it lives, and who can access it.",
         "Once the map exists, most of the mess is just old paper that can be shredded."),
        ("list every account on one page", "set up a password manager", "pick one folder for this year's tax documents")),
}

_U_OPEN = {
    "confusion_to_clarity": ("Okay, I'll be honest — I've read so much about this that I'm more confused than when I started.",
                             "I keep going back and forth and I can't figure out what actually matters here."),
    "shame_to_acceptance": ("This is embarrassing to admit, and I almost cancelled this call.",
                            "I haven't told anyone this, not even my closest friends."),
    "fear_to_confidence": ("I need to talk about something that's been keeping me up at night.",
                           "I'll be upfront: I'm scared, and I don't think I'm being rational about it."),
    "overwhelm_to_empowerment": ("I don't even know where to start, honestly.",
                                 "There are so many moving pieces that I've just been ignoring all of it."),
    "couple_conflict_to_alignment": ("{partner} and I keep having the same argument about this and it's getting worse.",
                                     "We sat down to talk about money last night and it ended with both of us going to bed angry."),
}
_U_FLAVOR = {
    "anxious_planner": ("I've built a spreadsheet with every scenario I can think of and somehow it makes me more anxious.",
                        "I check our accounts most mornings before I've even had coffee.",
                        "What if I'm missing something obvious and it blows up in ten years?"),
    "overwhelmed_avoider": ("I make good money, which is exactly why it feels so stupid that I don't have this handled.",
                            "I have statements I literally haven't opened.",
                            "Part of me just wants someone to tell me what to do so I can stop thinking about it."),
    "pragmatic_optimist": ("I'm not panicking, but I want to be smart about this.",
                           "We're doing okay — not rich, but okay — and I'd like to keep it that way.",
                           "I'm fine making tradeoffs as long as I understand what I'm trading."),
}
_U_FOLLOW = ("That actually helps. Can I ask about the part that still bugs me?",
             "Okay, that makes more sense than anything I've read online.",
             "I think what I'm still stuck on is the order — what do I do first?",
             "I tried explaining this to {partner} last night and it went better than I expected.",
             "Honestly, I teared up a little reading that. Nobody has put it that way before.",
             "So if I'm hearing you right, I'm not as far behind as I thought?")
_U_DETAIL = ("We have about {small} a month we could realistically move around.",
             "The number that scares me is {amt}, if I'm honest.",
             "My worry is that I'll commit to something and then {partner} and I need the money.",
             "I did the first step you mentioned, and it took twenty minutes, not the whole weekend I'd feared.")
_U_ASK = ("Where would you even start if you were me?", "Is it too late to fix this?",
          "Does that make sense, or am I overthinking it?", "What would the first step actually look like?",
          "Can we walk through the numbers together?")
_U_CLOSE = ("I think I can actually do this.", "I feel lighter than when we started — thank you.",
            "For the first time this feels like a plan instead of a problem.")
_A_OPEN = ("{name}, first — thank you for bringing this here. What you're feeling makes complete sense, and it comes from caring about your family.",
           "{name}, I want to pause on something you said, because it matters: you're not behind, you're paying attention. Those are very different things.",
           "Thank you for trusting me with this, {name}. It takes real courage to say it out loud, and there is no judgment here — none.",
           "{name}, I can hear how much weight you've been carrying. Let's set it down for a minute and look at it together.")
_A_NEXT = ("That's a really good question, {name}, and it's one most people never think to ask.",
           "{name}, what you just described is real progress, and I don't want us to rush past it.",
           "I love that you came back to this, {name} — it tells me you're already thinking like a planner.")
_A_NORM = ("You are far from alone. A large share of the people I work with are sitting with some version of this exact situation.",
           "Money carries family history, expectations and comparison, so it's completely normal for this to feel bigger than the numbers.",
           "Feeling stuck isn't a character flaw; it's usually a sign that the options were never laid out clearly.")
_A_BRIDGE = ("Would it help if I walked you through how I think about {topic}? No decisions today — just a clearer map.",
             "Can I share a way of looking at this that tends to take some of the pressure off?",
             "Let me offer a simple framework, and you tell me where it doesn't fit your life.")
_A_BODY = ("Let's put real numbers on it. Setting aside {small} a month is about {yearly} a year, and over {years} years at a conservative 5% return that grows to roughly {future}. That's not a rounding error — that's a real cushion.",
           "One thing I'd gently point out: the number that's been scaring you is the worst case, not the expected case. Planning for the worst case is wise; living as if it has already happened is exhausting.",
           "A useful way to think about {topic} is as a few separate buckets rather than one giant problem. Each bucket gets one decision, and once it's made we stop re-litigating it at 2am.",
           "I also want to name something: the fact that you're asking these questions at all puts you ahead of most people in your situation. Avoidance would look very different from this.",
           "There's a tradeoff here and I won't pretend otherwise. More flexibility now usually means a slightly slower path later — but slower is a choice you can make with your eyes open.",
           "Before we go further, I want to make sure we're solving your problem, not the one the internet says you should have. What matters most to you and {partner} is the real starting point.")
_A_CLOSE = ("How does that land for you?", "Which of those steps feels most doable this week?",
            "What part of this still feels uncertain?", "Would it help to talk through how to bring {partner} into this?")
_TRIGGERS = ("proactively", "after a sleepless week", "after a tense conversation with {partner}",
             "on a friend's recommendation", "after putting this off for months")
_SECONDARY = ("hope", "relief", "anxiety", "determination", "gratitude", "curiosity", "vulnerability",
              "cautious_optimism", "guilt", "embarrassment")
_NEGATIVE = {"shame", "anxiety", "frustration", "overwhelm", "fear"}
_POSITIVE = {"relief", "hope", "confidence", "cautious_hope", "determination", "partnership_confidence"}
_SKILL_SETS = (("overwhelmed_avoider", "anxious_planner"), ("anxious_planner", "overwhelmed_avoider"),
               ("overwhelmed_avoider", "anxious_planner", "pragmatic_optimist"),
               ("pragmatic_optimist", "anxious_planner", "overwhelmed_avoider"))


def _num(x: float) -> int | float:
    """Round like the service's numbers and print integral values without '.0' (JS style)."""
    x = round(x, 2)
    return int(x) if x == int(x) else x


def _money(n: float) -> str:
    return f"${int(round(n)):,}"


def _fill(template: str, r: random.Random, ctx: dict[str, str]) -> str:
    """Format a fragment with the conversation context plus fresh seeded numbers."""
    monthly, years = r.randrange(4, 40) * 25, r.randrange(5, 26)
    fv = monthly * 12 * ((1.05 ** years - 1) / 0.05)
    return template.format(small=_money(monthly), yearly=_money(monthly * 12), years=years,
                           future=_money(round(fv, -3)), **ctx)


def _user_text(r: random.Random, ctx: dict[str, str], arc: str, persona: str, topic: str, stage: int, last: bool) -> str:
    if stage == 0:
        parts = [r.choice(_U_OPEN[arc]), "Here's the situation: " + TOPICS[topic][1] + "."]
    else:
        parts = [r.choice(_U_FOLLOW), r.choice(_U_DETAIL)]
    parts.append(r.choice(_U_FLAVOR[persona]))
    parts.append(r.choice(_U_CLOSE) if last else r.choice(_U_ASK))
    return ("\n\n" if r.random() < 0.3 else " ").join(_fill(p, r, ctx) for p in parts)


def _assistant_text(r: random.Random, ctx: dict[str, str], topic: str, stage: int, n_body: int) -> str:
    facts, steps = TOPICS[topic][4], TOPICS[topic][5]
    if stage <= 1:
        paras = [r.choice(_A_OPEN) + " " + r.choice(_A_NORM), r.choice(_A_BRIDGE)]
    else:
        paras = [r.choice(_A_NEXT) + " " + r.choice(_A_NORM)]
    pool = list(facts + _A_BODY)
    for k in range(n_body):
        if k % len(pool) == 0:
            r.shuffle(pool)
        paras.append(pool[k % len(pool)])
    paras.append("Here's a simple sequence — one step at a time:\n" + "\n".join(
        f"{i}. {s[0].upper()}{s[1:]}" for i, s in enumerate(steps, 1)))
    paras.append(r.choice(_A_CLOSE))
    return "\n\n".join(_fill(p, r, ctx) for p in paras)


def conversation_uuid(seed: int | str) -> str:
    """The default conversation UUID for a seed (the first draw of the seeded generator)."""
    return str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))


def _tier(score: float) -> str:
    return "seed_dataset" if score >= 4.5 else "production" if score >= 3.5 else "experimental"


def generate_conversation(seed: int | str, *, conversation_id: str | None = None, turns: int | None = None,
                          quirks: Iterable[str] = (), created_date: str = "2026-11-01",
                          target_bytes: int | None = None, quality: float | None = None,
                          repeat_input_in_history: bool = True, persona: str | None = None,
                          arc: str | None = None, topic: str | None = None) -> dict:
    """One synthetic enriched conversation as the decoded JSON dict (v4 Individual shape).

    ``turns`` defaults to a seeded 4..10; ``persona``/``arc``/``topic`` default to seeded picks.
    ``quality`` fixes every pair's score (default 3, like the service; ``low_quality`` gives 2.0,
    ``varied_quality`` a seeded 2.0..5.0). ``repeat_input_in_history`` (default True, as the live
    service does) puts the user message both in the history and in ``current_user_input``.
    ``target_bytes`` pads or shortens the assistant responses so the serialised file is about that
    size (and drops turns when ``turns`` is not given and the file would be too big); the floor is
    about 20 KB. ``quirks`` adds the real defects by name (see ``QUIRKS``).
    """
    q = set(quirks)
    if q - QUIRKS:
        raise ValueError(f"unknown quirk(s): {sorted(q - QUIRKS)}; known: {sorted(QUIRKS)}")
    if turns is not None and turns < 2:
        raise ValueError("turns must be >= 2")
    rng = random.Random(seed)
    cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # always drawn, so overrides keep the rest
    cid = conversation_id or cid
    persona = persona or rng.choice(sorted(PERSONAS))
    arc = arc or rng.choice(sorted(ARCS))
    topic = topic or rng.choice(sorted(TOPICS))
    for kind, key, table in (("persona", persona, PERSONAS), ("arc", arc, ARCS), ("topic", topic, TOPICS)):
        if key not in table:
            raise ValueError(f"unknown {kind} {key!r}")
    drawn_turns = rng.randint(4, 10)
    plan = {
        "phase": rng.choice(ARCS[arc][3]),
        "difficulty": rng.choice(("beginner", "intermediate", "intermediate", "advanced")),
        "objective": rng.choice(ARCS[arc][6] + (topic,)),
        "skills": list(rng.choice(_SKILL_SETS)),
        "trigger": rng.choice(_TRIGGERS),
        "varied": round(rng.uniform(2.0, 5.0), 1),
        "bodies": [rng.randint(1, 3) for _ in range(max(turns or 0, 10))],
        "seeds": [rng.getrandbits(64) for _ in range(max(turns or 0, 10))],
        "cut": rng.getrandbits(64),
    }
    if quality is not None:
        score = float(quality)
    elif "low_quality" in q:
        score = 2.0
    elif "varied_quality" in q:
        score = plan["varied"]
    else:
        score = 3.0
    vary = quality is None and "low_quality" not in q and "varied_quality" in q
    args = (cid, persona, arc, topic, q, created_date, score, vary,
            repeat_input_in_history or "input_repeats_history" in q, plan)
    if target_bytes is None:
        return _assemble(*args, turns or drawn_turns, None)
    n_turns = turns or drawn_turns
    while turns is None and n_turns > 4 and _size(_assemble(*args, n_turns, 0)) > target_bytes:
        n_turns -= 1
    if "wrong_shape" in q:
        return _assemble(*args, n_turns, 0)
    lo, hi = 0, 1
    while _size(_assemble(*args, n_turns, hi)) < target_bytes and hi < 1 << 16:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # smallest budget whose size reaches the target
        mid = (lo + hi) // 2
        if _size(_assemble(*args, n_turns, mid)) >= target_bytes:
            hi = mid
        else:
            lo = mid
    best = min((lo, hi), key=lambda b: abs(_size(_assemble(*args, n_turns, b)) - target_bytes))
    return _assemble(*args, n_turns, best)


def _size(doc: dict) -> int:
    return len(dumps_enriched(doc))


def _assemble(cid: str, persona: str, arc: str, topic: str, q: set[str], created_date: str, score: float,
              vary: bool, repeat: bool, plan: dict, n_turns: int, budget: int | None) -> dict:
    name, title, partner, background = PERSONAS[persona]
    arc_name, code, template, _phases, user_emos, asst_emos, _objectives, leaves = ARCS[arc]
    topic_name, _sit, goal, outcome = TOPICS[topic][:4]
    first = name.split()[0]
    ctx = {"name": first, "partner": partner, "topic": topic_name.lower()}
    seeds = plan["seeds"]
    r0 = random.Random(seeds[0] ^ 0x5EED)
    ctx.update(amt=_money(r0.randrange(18, 96) * 1000), rate=r0.choice(("4.5", "5.9", "6.1", "6.8", "7.2")),
               age=str(r0.randint(52, 63)))
    n_asst = n_turns // 2
    if budget is None:
        bodies = plan["bodies"]
    else:  # spread the padding budget round-robin over the assistant turns
        bodies = [0] * (n_turns + 1)
        for i in range(n_asst):
            bodies[2 * i + 1] = budget // n_asst + (1 if i < budget % n_asst else 0)
    texts, emos = [], []
    for i in range(n_turns):
        r = random.Random(seeds[i])
        p = i / max(n_turns - 1, 1)
        stage = 0 if i == 0 else i
        if i % 2 == 0:
            texts.append(_user_text(r, ctx, arc, persona, topic, stage, i >= n_turns - 2 and i > 0))
        else:
            texts.append(_assistant_text(r, ctx, topic, stage, bodies[i]))
        seq = user_emos if i % 2 == 0 else asst_emos
        primary = seq[min(int(p * len(seq)), len(seq) - 1)]
        valence = "negative" if primary in _NEGATIVE else "positive" if primary in _POSITIVE else "mixed"
        emos.append({"primary": primary, "primary_confidence": 0.8, "secondary": r.choice(_SECONDARY),
                     "secondary_confidence": 0.7, "intensity": _num(0.85 - 0.25 * p + r.uniform(-0.04, 0.04)),
                     "valence": valence})
    if "double_escaped_newline" in q:
        texts = [t.replace("\n", "\\n") for t in texts]
    if "truncated_backslash" in q:
        rc = random.Random(plan["cut"])
        asst = list(range(1, n_turns, 2))
        for i in asst:
            if i == asst[0] or rc.random() < 0.5:  # at least the first target, then about half
                t = texts[i]
                cut = t.rfind(" ", 0, max(20, int(len(t) * rc.uniform(0.4, 0.9))))
                texts[i] = t[:cut + 1] + "\\"
    meta = {"client_persona": f"{name} - {title}", "client_background": background,
            "session_context": f"{first} is reaching out {_fill(plan['trigger'], r0, ctx)} to {goal}",
            "conversation_phase": plan["phase"],
            "expected_outcome": f"{first} {outcome}, leaving with {leaves}",
            "persona_archetype": persona, "emotional_arc": arc_name, "emotional_arc_key": arc,
            "training_topic": topic_name, "training_topic_key": topic}
    if "missing_scaffolding_keys" in q:
        meta = {k: v for k, v in meta.items() if k not in SCAFFOLDING_KEYS}
    if "wrong_shape" in q:
        return {"conversation_metadata": {k: meta[k] for k in ("client_persona", "session_context",
                                                               "conversation_phase", "expected_outcome")},
                "turns": [{"turn_number": i + 1, "role": "user" if i % 2 == 0 else "assistant", "content": t,
                           "emotional_context": {"primary_emotion": e["primary"], "secondary_emotion": e["secondary"],
                                                 "intensity": e["intensity"]}}
                          for i, (t, e) in enumerate(zip(texts, emos))]}
    start, end = ("frustration", "clarity") if arc.startswith("couple") else arc.split("_to_")
    progression = f"{start}(0.8) → {end}(0.8)"
    pairs = []
    for i in range(n_turns):
        n = i + 1
        user_turn = i % 2 == 0
        n_hist = i if (user_turn or repeat) else i - 1
        history = []
        for j in range(n_hist):
            item = {"turn": j + 1, "role": "user" if j % 2 == 0 else "assistant", "content": texts[j],
                    "emotional_state": {k: emos[j][k] for k in ("primary", "secondary", "intensity")}}
            if j == 0 and "history_without_role" in q:
                del item["role"]
            history.append(item)
        r = random.Random(seeds[i] ^ 0xC0FFEE)
        pair_score = min(5.0, max(2.0, score + r.choice((-0.1, 0.0, 0.1)))) if vary else score
        criteria = {k: _num(min(5.0, max(1.0, pair_score + r.choice((-0.2, -0.1, 0.0, 0.1, 0.2)))))
                    for k in ("empathy_score", "clarity_score", "appropriateness_score", "brand_voice_alignment")}
        pairs.append({
            "id": f"{code}_turn{n}", "conversation_id": code, "turn_number": n,
            "conversation_metadata": dict(meta), "system_prompt": SYSTEM_PROMPT,
            "conversation_history": history,
            "current_user_input": texts[i] if user_turn else texts[i - 1],
            "emotional_context": {"detected_emotions": dict(emos[i])},
            "target_response": None if user_turn or "no_trainable_pair" in q else texts[i],
            "training_metadata": {
                "difficulty_level": f"{plan['difficulty']}_conversation_turn_{n}",
                "key_learning_objective": plan["objective"], "demonstrates_skills": list(plan["skills"]),
                "conversation_turn": n, "emotional_progression_target": progression,
                "quality_score": _num(pair_score), "quality_criteria": criteria,
                "human_reviewed": False, "reviewer_notes": None, "use_as_seed_example": False,
                "generate_variations_count": 0}})
    if "non_sequential_turns" in q:
        for pair in pairs[2:]:
            pair["turn_number"] += 1  # 1, 2, 4, 5, ...: a gap at turn 3
    doc: dict[str, Any] = {
        "dataset_metadata": {
            "dataset_name": f"fp_conversation_{cid}", "version": "1.0.0", "created_date": created_date,
            "vertical": "financial_planning_consultant",
            "consultant_persona": f"{CONSULTANT['name']} - {CONSULTANT['business']}",
            "target_use": "LoRA fine-tuning for emotionally intelligent chatbot",
            "conversation_source": "synthetic_platform_generated", "quality_tier": _tier(score),
            "total_conversations": 1, "total_turns": n_turns,
            "notes": f"Generated via template: Template - {template}"},
        "consultant_profile": orjson.loads(orjson.dumps(CONSULTANT)),  # deep copy
        "training_pairs": pairs,
    }
    if "missing_scaffolding_keys" not in q:
        doc["input_parameters"] = {
            "persona_id": str(uuid.uuid5(_ID_NS, "persona:" + persona)), "persona_key": persona,
            "persona_name": name, "emotional_arc_id": str(uuid.uuid5(_ID_NS, "arc:" + arc)),
            "emotional_arc_key": arc, "emotional_arc_name": arc_name,
            "training_topic_id": str(uuid.uuid5(_ID_NS, "topic:" + topic)),
            "training_topic_key": topic, "training_topic_name": topic_name}
    return doc


def generate_conversations(count: int, seed: int = 0, **kw: Any) -> Iterator[dict]:
    """A deterministic stream of ``count`` conversations; item i uses the seed ``"<seed>:<i>"``."""
    if count > 1 and kw.get("conversation_id"):
        raise ValueError("conversation_id cannot be fixed for more than one conversation")
    for i in range(count):
        yield generate_conversation(f"{seed}:{i}", **kw)


def dumps_enriched(doc: dict) -> bytes:
    """Serialise like the service (``JSON.stringify(data, null, 2)``): 2-space indent, raw UTF-8, no final newline."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def write_sample_dir(directory: Path | str, count: int, seed: int = 0, **kw: Any) -> list[Path]:
    """Write ``<conversation_id>.json`` files for ``count`` conversations; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, doc in enumerate(generate_conversations(count, seed, **kw)):
        name = doc.get("dataset_metadata", {}).get("dataset_name", "").removeprefix("fp_conversation_")
        path = directory / f"{name or kw.get('conversation_id') or conversation_uuid(f'{seed}:{i}')}.json"
        path.write_bytes(dumps_enriched(doc))
        paths.append(path)
    return paths
