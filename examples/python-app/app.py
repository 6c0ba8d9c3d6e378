from greeting import greet

print(greet("imgb"))
