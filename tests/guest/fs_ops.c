/* Writable files in the guest: create, write, append, seek, truncate,
 * rename (replacing, atomic), mkdir, rmdir, unlink, listing, with Linux's
 * errors. Prints one line per check ("ok NAME" or "FAIL NAME: ..."), then
 * "done N" with the number of failures; exits with it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

static void check(const char* name, int ok, const char* detail) {
  if (ok) printf("ok %s\n", name);
  else printf("FAIL %s: %s (errno %d)\n", name, detail, errno), failures++;
}

static int fails_with(int r, int e) { return r < 0 && errno == e; }

static int count_entries(const char* dir, const char* want) {
  DIR* d = opendir(dir);
  if (!d) return -1;
  int n = 0, found = 0;
  struct dirent* e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (want && strcmp(e->d_name, want) == 0) found = 1;
  }
  closedir(d);
  return want ? found : n;
}

int main(void) {
  char buf[64] = {0};
  int fd = open("/tmp/a", O_CREAT | O_EXCL | O_RDWR, 0640);
  check("create", fd >= 0, "open O_CREAT|O_EXCL");
  check("write", write(fd, "hello", 5) == 5, "write");
  check("exclusive", fails_with(open("/tmp/a", O_CREAT | O_EXCL | O_WRONLY, 0600), EEXIST), "second O_EXCL");
  check("seek-end", lseek(fd, 0, SEEK_END) == 5, "lseek SEEK_END");
  check("pwrite-hole", pwrite(fd, "!", 1, 9) == 1, "pwrite past the end");
  check("pread", pread(fd, buf, sizeof buf, 0) == 10 && memcmp(buf, "hello\0\0\0\0!", 10) == 0, "hole reads zeros");
  struct stat st;
  check("fstat", fstat(fd, &st) == 0 && st.st_size == 10 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0640,
        "size 10, mode 0640");
  check("ftruncate", ftruncate(fd, 2) == 0 && fstat(fd, &st) == 0 && st.st_size == 2, "shrink to 2");
  close(fd);
  fd = open("/tmp/a", O_WRONLY | O_APPEND);
  check("append", fd >= 0 && write(fd, "y", 1) == 1 && lseek(fd, 0, SEEK_CUR) == 3, "O_APPEND writes at the end");
  close(fd);
  fd = open("/tmp/a", O_RDONLY);
  memset(buf, 0, sizeof buf);
  check("read-back", fd >= 0 && read(fd, buf, sizeof buf) == 3 && strcmp(buf, "hey") == 0, "reads hey");
  check("read-only-fd", fails_with(write(fd, "x", 1), EBADF), "write on O_RDONLY");
  close(fd);

  check("mkdir", mkdir("/tmp/d", 0755) == 0, "mkdir");
  check("mkdir-exists", fails_with(mkdir("/tmp/d", 0755), EEXIST), "mkdir twice");
  check("mkdir-noparent", fails_with(mkdir("/tmp/no/such", 0755), ENOENT), "parent missing");
  check("mkdir-image", fails_with(mkdir("/bin/new", 0755), EROFS) || fails_with(mkdir("/bin/new", 0755), ENOENT),
        "inside the image");
  check("rename-into", rename("/tmp/a", "/tmp/d/b") == 0 && access("/tmp/a", F_OK) != 0, "rename");
  check("listing", count_entries("/tmp/d", "b") == 1 && count_entries("/tmp/d", NULL) == 1, "readdir sees b");
  fd = open("/tmp/d/c.tmp", O_CREAT | O_WRONLY | O_TRUNC, 0644);
  check("replace", fd >= 0 && write(fd, "new", 3) == 3 && close(fd) == 0 && rename("/tmp/d/c.tmp", "/tmp/d/b") == 0,
        "write-then-rename over a file");
  fd = open("/tmp/d/b", O_RDONLY);
  memset(buf, 0, sizeof buf);
  check("replaced", fd >= 0 && read(fd, buf, sizeof buf) == 3 && strcmp(buf, "new") == 0, "the new content");
  close(fd);
  check("rmdir-notempty", fails_with(rmdir("/tmp/d"), ENOTEMPTY), "rmdir non-empty");
  check("unlink-dir", fails_with(unlink("/tmp/d"), EISDIR), "unlink a directory");
  check("rmdir-file", fails_with(rmdir("/tmp/d/b"), ENOTDIR), "rmdir a file");
  check("rename-into-self", fails_with(rename("/tmp/d", "/tmp/d/e"), EINVAL), "into itself");
  fd = open("/tmp/d/b", O_RDONLY);
  check("unlink-open", unlink("/tmp/d/b") == 0 && access("/tmp/d/b", F_OK) != 0, "unlink while open");
  memset(buf, 0, sizeof buf);
  check("still-readable", read(fd, buf, sizeof buf) == 3 && strcmp(buf, "new") == 0, "data until close");
  close(fd);
  check("rmdir", rmdir("/tmp/d") == 0 && access("/tmp/d", F_OK) != 0, "rmdir empty");
  check("image-ro", fails_with(open("/bin/fs_ops", O_WRONLY), EROFS) || fails_with(open("/bin/fs_ops", O_WRONLY), ENOENT),
        "image files stay read-only");
  check("unlink-missing", fails_with(unlink("/tmp/nothing"), ENOENT), "unlink missing");
  fd = open("/tmp/rel", O_CREAT | O_WRONLY, 0600);
  close(fd);
  check("chdir-relative", chdir("/tmp") == 0 && access("rel", F_OK) == 0 && getcwd(buf, sizeof buf) &&
                              strcmp(buf, "/tmp") == 0, "relative paths in /tmp");
  printf("done %d\n", failures);
  return failures;
}
