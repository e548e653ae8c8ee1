/* An interpreter-backed function: a static Lua 5.4 host that loads the script
 * packed in the image (/app/main.lua), reads the whole request from stdin and
 * prints what the script's handle(request) returns. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char* read_all(FILE* f, size_t* len) {
  size_t cap = 4096, n = 0;
  char* buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  *len = n;
  return buf;
}

int main(int argc, char** argv) {
  const char* script = argc > 1 ? argv[1] : "/app/main.lua";
  lua_State* L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dofile(L, script) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    return 1;
  }
  size_t len;
  char* request = read_all(stdin, &len);
  if (!request) return 1;
  lua_getglobal(L, "handle");
  lua_pushlstring(L, request, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    return 1;
  }
  size_t out_len;
  const char* out = lua_tolstring(L, -1, &out_len);
  if (out) fwrite(out, 1, out_len, stdout);
  lua_close(L);
  free(request);
  return 0;
}
