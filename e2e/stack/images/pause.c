/* The sandbox process of the local node's pods (containerd's CRI "sandbox" image): PID 1 of the
 * namespaces a pod's containers share. It holds them, reaps the zombies that end up with it,
 * and exits at once on SIGTERM or SIGINT so that a pod never waits out its grace period on it.
 * Built statically by e2e/stack/node.sh; the image holds this one file. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction action = {0};
  sigemptyset(&action.sa_mask);
  action.sa_handler = stop;
  if (sigaction(SIGTERM, &action, NULL) != 0 || sigaction(SIGINT, &action, NULL) != 0) return 1;
  action.sa_handler = reap;
  action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGCHLD, &action, NULL) != 0) return 1;
  for (;;) pause();
}
