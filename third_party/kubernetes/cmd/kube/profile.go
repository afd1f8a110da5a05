package main

// A CPU profile of a component's start, for the boot profile (`make profile-boot`,
// docs/architecture.md "Where a boot's time goes"). Off unless CAIRN_CPU_PROFILE
// names the file to write. The profile runs from process start until SIGUSR2 (the
// agent sends it when the component turns ready) or profileCap, whichever is first,
// so it covers exactly the start-up and not the idle time after it.

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

// profileCap bounds a profile whose component never turns ready.
const profileCap = 5 * time.Minute

// startProfile starts the CPU profile CAIRN_CPU_PROFILE asks for, if any. A profile
// that cannot start is reported and the component runs unprofiled: a profile is
// never a reason for a component not to start.
func startProfile(component string) {
	path := os.Getenv("CAIRN_CPU_PROFILE")
	if path == "" {
		return
	}
	file, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn: %s: no CPU profile: %v\n", component, err)
		return
	}
	if err := pprof.StartCPUProfile(file); err != nil {
		fmt.Fprintf(os.Stderr, "cairn: %s: no CPU profile: %v\n", component, err)
		file.Close()
		return
	}
	started := time.Now()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR2)
	go func() {
		why := "SIGUSR2"
		select {
		case <-stop:
		case <-time.After(profileCap):
			why = "the cap of " + profileCap.String()
		}
		signal.Stop(stop)
		pprof.StopCPUProfile()
		err := file.Sync()
		if closeErr := file.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cairn: %s: CPU profile %s: %v\n", component, path, err)
			return
		}
		fmt.Fprintf(os.Stderr, "cairn: %s: CPU profile of the first %.2f s written to %s (stopped by %s)\n",
			component, time.Since(started).Seconds(), path, why)
	}()
}
