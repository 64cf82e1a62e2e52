// Command dynoapp is the app the dyno tests run: a web server, a stubborn
// process and a memory hog.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dynoapp web|stubborn|hog MB")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "web":
		serve()
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		serve()
	case "hog":
		mb, _ := strconv.Atoi(os.Args[2])
		hog(mb)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func serve() {
	http.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		sort.Strings(env)
		fmt.Fprintln(w, strings.Join(env, "\n"))
	})
	started := time.Now().UnixNano()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s pid %d started %d\n", os.Getenv("DYNO"), os.Getpid(), started)
	})
	fmt.Printf("listening on %s\n", os.Getenv("PORT"))
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// hog allocates mb megabytes (forever when mb < 0), touching every page,
// then sleeps.
func hog(mb int) {
	var keep [][]byte
	for i := 0; mb < 0 || i < mb; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(j)
		}
		keep = append(keep, b)
		if i%8 == 0 {
			fmt.Printf("allocated %d MB\n", i+1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("holding %d MB\n", len(keep))
	for {
		time.Sleep(time.Hour)
		_ = keep
	}
}
