"""Writes examples/orders/{train,valid}.jsonl: customer messages to turn into one strict JSON object.

A task SmolLM2-135M-Instruct does badly out of the box (it answers in prose, invents fields or forgets quotes),
and learns in a few hundred LoRA steps. Seeded, so the files regenerate identically:
    python3 scripts/make_orders_dataset.py
"""
import json, os, random

rng = random.Random(2026)
items = ["t-shirt", "mug", "notebook", "backpack", "umbrella", "water bottle", "hoodie", "cap", "lamp", "scarf"]
colors = ["red", "blue", "green", "black", "white", "yellow", "grey", "purple"]
cities = ["Berlin", "Paris", "Madrid", "Lisbon", "Vienna", "Oslo", "Dublin", "Prague", "Rome", "Warsaw", "Athens", "Zurich"]
numbers = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
templates = [
    "Hi, I'd like {q} {c} {i}{s} delivered to {city}, please.",
    "Please send {q} {c} {i}{s} to my address in {city}.",
    "Can I order {q} {i}{s} in {c}? Shipping to {city}.",
    "{city} here! Need {q} {c} {i}{s} asap.",
    "Order: {q} x {i}, colour {c}, ship to {city}.",
    "I want to buy {q} {c} {i}{s}. I live in {city}.",
    "Hello! Could you deliver {q} {i}{s} ({c}) to {city}?",
    "We need {q} {c} {i}{s} for the office in {city}.",
]


def example():
    item, color, city, quantity = rng.choice(items), rng.choice(colors), rng.choice(cities), rng.randint(1, 10)
    q = numbers[quantity] if rng.random() < 0.5 else str(quantity)
    text = rng.choice(templates).format(q=q, c=color, i=item, s="s" if quantity > 1 and "x" not in q else "", city=city)
    answer = json.dumps({"item": item, "color": color, "quantity": quantity, "city": city})
    return {"messages": [
        {"role": "user", "content": "Extract the order as JSON with keys item, color, quantity, city.\n" + text},
        {"role": "assistant", "content": answer}]}


folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "orders")
os.makedirs(folder, exist_ok=True)
for name, count in [("train", 240), ("valid", 40)]:
    with open(os.path.join(folder, f"{name}.jsonl"), "w") as fh:
        for _ in range(count):
            fh.write(json.dumps(example()) + "\n")
