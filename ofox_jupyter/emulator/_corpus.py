"""The text the emulator's word model learns from (written for this package; no download).

It talks about what a notebook user asks about — data, plots, code, models — so that sampled
continuations of a prompt read like an answer's filler rather than noise.
"""

CORPUS = """
A notebook keeps code, results and notes together, so the story of an analysis can be read from
top to bottom. Each cell runs in the kernel, and the kernel remembers every variable you define.
When a cell fails, the error tells you which line broke and what the value looked like at the
time. Read the last line of the traceback first, then the lines above it that point into your
own code.

A data frame holds a table of rows and columns. Every column has a type, and the type decides
what you can do with it. Numbers can be summed and averaged, dates can be grouped by month, and
text can be split, cleaned and counted. Before you trust a result, look at the first rows, count
the missing values and check that the types are the ones you expect.

A plot shows a pattern faster than a table does. A line chart shows how a value changes over
time, a bar chart compares groups, a histogram shows how values are spread, and a scatter plot
shows how two measurements move together. Label the axes, give the chart a title and keep the
colours few, so the reader sees the pattern and not the decoration.

A model predicts the next word from the words before it. At a low temperature it picks the most
likely word every time, so the same question gets the same answer. At a high temperature it
samples more freely, so the answers vary, sometimes in useful ways and sometimes in strange ones.
Top p keeps only the most likely words whose chances add up to p, which cuts off the long tail
of unlikely choices. A seed makes the sampling repeatable, so a lesson can show the same result
to every student.

Good code is short, named well and easy to test. A function should do one thing and say what it
does in its name. When a loop grows long, move its body into a function; when a value is used in
many places, give it a name. Write a small test for the case that broke, so it never breaks again
without anyone noticing.

Cost grows with the number of tokens you send and receive. A long history makes every new
question more expensive, because the whole conversation is sent again each time. Start a new chat
when the topic changes, ask for short answers when short answers will do, and watch the usage
after each reply.

An error is information. A missing name means a cell that defines it has not run yet. A key
error means the column or the entry is not there, often because of a typo or a space. A division
by zero means a count was empty, so the data had no rows for that case. A type error means two
values of different kinds met where only one kind makes sense.

Images can be sent to a model that sees. A chart becomes a picture, the model describes what it
shows, and you compare its description with what you expected. Small images are cheaper; a chart
rarely needs more than a few hundred pixels on each side to be understood.

Tools let a model ask your code for facts. The model names a function and its arguments, your
notebook runs it, and the result goes back to the model, which then answers with the numbers it
was given rather than numbers it guessed. Keep tools small and their results short.

Teaching with a model works best when every student sees the same thing. Record the lesson once,
replay it anywhere, and let the students change the temperature to see what sampling does. Set a
budget, so that curiosity never turns into a surprise on the bill.
"""
