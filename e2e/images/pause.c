/*
 * Pod sandbox process for the local e2e cluster, built as a static binary
 * into the berth.local/pause image. It keeps the pod's namespaces alive,
 * reaps orphaned children (it is PID 1 when the pod shares its PID
 * namespace) and exits with status 0 on SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAUSE_VERSION
#define PAUSE_VERSION "unknown"
#endif

static void exit_on_signal(int signal_number) {
  (void)signal_number;
  _exit(0);
}

static void reap_children(int signal_number) {
  (void)signal_number;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static int set_handler(int signal_number, void (*handler)(int), int flags) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = handler;
  action.sa_flags = flags;
  sigemptyset(&action.sa_mask);
  return sigaction(signal_number, &action, NULL);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("berth pause %s\n", PAUSE_VERSION);
    return 0;
  }
  if (getpid() != 1) {
    fprintf(stderr, "pause: warning: not running as PID 1\n");
  }
  if (set_handler(SIGINT, exit_on_signal, 0) || set_handler(SIGTERM, exit_on_signal, 0) ||
      set_handler(SIGCHLD, reap_children, SA_NOCLDSTOP | SA_RESTART)) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) {
    pause();
  }
}
