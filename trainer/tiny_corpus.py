"""A small built-in English corpus for training the `tiny` preset's byte-level BPE tokenizer
offline. Plain prose plus instruction/response shaped text, so common words get single tokens."""

TINY_CORPUS = """
Write a short story about a wise frog who lives by the river.
Once upon a time there was a wise old frog. Every morning he sat on a green leaf and watched
the water. The children of the village came to ask him questions, and he always answered
with kindness and patience. One day a storm came, and the frog helped the ducks find a safe
place to rest. After that, everyone in the village called him the kind and clever frog.
Explain the moon landing to a six year old in a few sentences.
People went to the moon in a big rocket. They flew for three days, landed, and walked on the
moon. They took pictures, picked up rocks, and then came back home to tell everyone.
Summarize the following paragraph in one sentence.
The city council met on Tuesday to discuss the new park. Many people came to speak, and most
of them were happy about the plan because it will give children a safe place to play.
List three ideas for a birthday party for a friend who loves books.
1. A library picnic with favourite stories. 2. A book swap where every guest brings a book.
3. A mystery game based on a famous novel.
Translate this sentence into French: the cat is sleeping on the warm chair.
Answer the question: what is the capital of France? The capital of France is Paris.
Classify the sentiment of this review: the food was good, the service was slow, but the view
was beautiful and we would come back again.
Rewrite the email to sound more polite and professional.
Dear team, thank you for your help this week. Could you please send me the report by Friday?
Brainstorm names for a coffee shop near the sea: Harbour Beans, Salt and Steam, Morning Tide.
Please answer truthfully. If you do not know the answer, say that you do not know.
The assistant should be helpful, honest and harmless. It should follow the user's instructions,
ask for clarification when the request is unclear, and refuse to give harmful advice.
This is a good answer because it is clear, correct and short. This is a bad answer because it
is long, wrong and rude. The best response is kind, bright, happy, warm and helpful.
The worst response is sad, dull, cold, angry and useless.
Once there was a small robot who wanted to learn to paint. It tried every colour: red, blue,
green, yellow, orange and purple. In the end it painted the sunset over the hills.
Question: how many legs does a spider have? Answer: a spider has eight legs.
Question: why is the sky blue? Answer: sunlight is scattered by the air, and blue light is
scattered the most, so we see a blue sky during the day.
In the morning we eat breakfast, in the afternoon we work and study, and in the evening we
read, talk with our family and go to sleep. Tomorrow is another day.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a
single step. Knowledge is power, and time is money.
Instruction: write a poem about the ocean. Response: the ocean sings in blue and grey, it
carries ships and stars away, and every wave that meets the shore returns to sing a little more.
Step one: read the question. Step two: think about the answer. Step three: write it clearly.
Numbers: one two three four five six seven eight nine ten eleven twelve hundred thousand.
0 1 2 3 4 5 6 7 8 9 10 20 50 100 2022 3.14 yes no true false maybe.
"""
