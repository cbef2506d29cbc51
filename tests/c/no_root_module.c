/* Fixture: a valid shared library that is not a plugin (exports no root module). */
int add(int a, int b) { return a + b; }
